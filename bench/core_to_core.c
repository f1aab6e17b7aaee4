/* How long one cache line takes to go from one CPU to another and back (two threads, pinned to
 * the first two CPUs this process may use, bounce a counter). A no-op job moves a few dozen
 * cache lines between the master's and the worker's cores, so its cost follows this number.
 *
 * On the 2-vCPU test VM it is bimodal: ~55 ns when the host runs both vCPUs on cores that
 * share a cache, ~325 ns when it does not, and the host switches between the two at random
 * while a run goes on (bench/README.md). The benchmark records it next to the results.
 *
 *   core_to_core        prints {"round_trip_ns": median, "rounds_ns": [...]} */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { ROUNDS = 7, BOUNCES = 20000 };

static _Alignas(64) atomic_long line;
static int cpus[2];

static int pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

/* The partner answers every odd value with the next even one. */
static void *partner(void *unused) {
    (void)unused;
    pin(cpus[1]);
    for (long i = 1; i <= (long)ROUNDS * BOUNCES; ++i) {
        while (atomic_load_explicit(&line, memory_order_acquire) != 2 * i - 1) {}
        atomic_store_explicit(&line, 2 * i, memory_order_release);
    }
    return NULL;
}

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(void) {
    cpu_set_t allowed;
    int found = 0;
    sched_getaffinity(0, sizeof allowed, &allowed);
    for (int c = 0; c < CPU_SETSIZE && found < 2; ++c)
        if (CPU_ISSET(c, &allowed)) cpus[found++] = c;
    if (found < 2) {
        printf("{\"error\": \"fewer than 2 CPUs usable\"}\n");
        return 0;
    }
    pthread_t thread;
    if (pin(cpus[0]) != 0 || pthread_create(&thread, NULL, partner, NULL) != 0) {
        printf("{\"error\": \"could not pin or start the partner thread\"}\n");
        return 0;
    }
    double rounds[ROUNDS];
    for (int r = 0; r < ROUNDS; ++r) {
        double t0 = now_ns();
        for (long i = (long)r * BOUNCES + 1; i <= (long)(r + 1) * BOUNCES; ++i) {
            atomic_store_explicit(&line, 2 * i - 1, memory_order_release);
            while (atomic_load_explicit(&line, memory_order_acquire) != 2 * i) {}
        }
        rounds[r] = (now_ns() - t0) / BOUNCES;
    }
    pthread_join(thread, NULL);
    printf("{\"cpus\": [%d, %d], \"rounds_ns\": [", cpus[0], cpus[1]);
    for (int r = 0; r < ROUNDS; ++r) printf("%s%.0f", r ? ", " : "", rounds[r]);
    qsort(rounds, ROUNDS, sizeof rounds[0], cmp_double);
    printf("], \"round_trip_ns\": %.0f}\n", rounds[ROUNDS / 2]);
    return 0;
}
