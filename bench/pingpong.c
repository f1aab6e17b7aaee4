/* The floor every MPI-based job server sits on: a plain MPI ping-pong between two processes.
 *
 *   mpirun -np 2 pingpong            two ranks of one world (shared memory unless told otherwise)
 *   pingpong spawn                   a singleton that MPI_Comm_spawns its partner: the same
 *                                    path (TCP between master and a spawned worker) as ppmpi's
 *                                    launch mode 1
 *
 * Prints one JSON object: for each size, the median round trip over many iterations, one-way
 * latency (half of it) and bandwidth = bytes / (half round trip). Medians, not means, so a
 * neighbour's burst of CPU on this 2-core machine does not decide the number. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct { long bytes; int iters; } SIZES[] = {
    {8, 20000}, {1L << 20, 400}, {64L << 20, 16}};
enum { NSIZES = sizeof SIZES / sizeof SIZES[0], WARMUP = 3, MAX_ITERS = 20000 };

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The pinging side: returns the median round-trip time in seconds. */
static double ping(MPI_Comm comm, int peer, char *buf, long bytes, int iters, double *rtt) {
    for (int i = -WARMUP; i < iters; ++i) {
        double t0 = MPI_Wtime();
        MPI_Send(buf, (int)bytes, MPI_BYTE, peer, 0, comm);
        MPI_Recv(buf, (int)bytes, MPI_BYTE, peer, 0, comm, MPI_STATUS_IGNORE);
        if (i >= 0) rtt[i] = MPI_Wtime() - t0;
    }
    qsort(rtt, (size_t)iters, sizeof *rtt, cmp_double);
    return rtt[iters / 2];
}

static void pong(MPI_Comm comm, int peer, char *buf, long bytes, int iters) {
    for (int i = -WARMUP; i < iters; ++i) {
        MPI_Recv(buf, (int)bytes, MPI_BYTE, peer, 0, comm, MPI_STATUS_IGNORE);
        MPI_Send(buf, (int)bytes, MPI_BYTE, peer, 0, comm);
    }
}

static void run(MPI_Comm comm, int peer, int pinger, const char *mode) {
    char *buf = calloc(1, (size_t)SIZES[NSIZES - 1].bytes);
    double *rtt = malloc(sizeof(double) * MAX_ITERS);
    if (!buf || !rtt) MPI_Abort(MPI_COMM_WORLD, 2);
    if (pinger) printf("{\"mode\": \"%s\", \"sizes\": [", mode);
    for (int s = 0; s < NSIZES; ++s) {
        if (!pinger) { pong(comm, peer, buf, SIZES[s].bytes, SIZES[s].iters); continue; }
        double med = ping(comm, peer, buf, SIZES[s].bytes, SIZES[s].iters, rtt);
        printf("%s{\"bytes\": %ld, \"iters\": %d, \"rtt_us\": %.3f, \"latency_us\": %.3f, "
               "\"bandwidth_gib_s\": %.4f}", s ? ", " : "", SIZES[s].bytes, SIZES[s].iters,
               med * 1e6, med * 5e5, SIZES[s].bytes / (med / 2) / (1024.0 * 1024 * 1024));
    }
    if (pinger) printf("]}\n");
    fflush(stdout);
    free(buf);
    free(rtt);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm parent;
    MPI_Comm_get_parent(&parent);
    if (parent != MPI_COMM_NULL) {           /* the spawned partner: pong back to the singleton */
        run(parent, 0, 0, "spawn");
        MPI_Comm_disconnect(&parent);
    } else if (argc > 1 && strcmp(argv[1], "spawn") == 0) {
        MPI_Comm child;
        MPI_Comm_spawn(argv[0], MPI_ARGV_NULL, 1, MPI_INFO_NULL, 0, MPI_COMM_SELF, &child,
                       MPI_ERRCODES_IGNORE);
        run(child, 0, 1, "spawn");
        MPI_Comm_disconnect(&child);
    } else {
        int rank, size;
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        MPI_Comm_size(MPI_COMM_WORLD, &size);
        if (size != 2) {
            if (rank == 0) fprintf(stderr, "pingpong: run with exactly 2 ranks\n");
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        run(MPI_COMM_WORLD, 1 - rank, rank == 0, argc > 1 ? argv[1] : "world");
    }
    MPI_Finalize();
    return 0;
}
