// bench/sim/sim_scale: the master's cost per job and per idle worker, from 10 to 10,000 workers.
//
// The real Dispatcher, driven on this thread as the master's thread drives it, against a Farm
// of fake workers (sim_farm.hpp) on another thread. For each worker count it measures, on this
// thread's CPU clock:
//  1. idle: the master's CPU while every worker only sends heartbeats (--idle-seconds);
//  2. single: CPU per job for jobs that report 0.1 s of run time, one in flight per worker (a
//     closed loop: each job is a Task frame and a Result frame of its own);
//  3. pipelined: CPU per job for no-op jobs all submitted at once (many per frame).
// CPU per job counts the turns that moved something (submitting included), not the polls
// between them, whose number depends on how fast the farm answers.
// and the master's heap per worker. Prints a table (and JSON with --json FILE).
// --check: every job must finish and no worker be lost (exit status 1 otherwise); for CTest.
#include <malloc.h>
#include <time.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include "ppmpi/core/backoff.hpp"
#include "ppmpi/master/dispatcher.hpp"
#include "sim_farm.hpp"

using namespace ppmpi;
using namespace ppmpi_bench;

namespace {

struct Options {
    std::vector<std::size_t> sizes{10, 100, 1000, 10000};
    double idle_seconds = 5.0;
    std::size_t min_jobs = 20000;
    std::string json;
    bool check = false;
};

struct Row {
    std::size_t workers = 0;
    double idle_cpu_percent = 0, heartbeats_per_s = 0;
    double single_us = 0, single_jobs_per_s = 0;
    double pipelined_us = 0, pipelined_jobs_per_s = 0;
    double heap_kib_per_worker = 0;
    std::uint64_t lost = 0;
};

double thread_cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Heap in use (the farm's share is a few bytes per worker).
double heap_kib() { return static_cast<double>(mallinfo2().uordblks) / 1024.0; }

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

// Steps the dispatcher as the master's loop does (a turn, then the backoff's sleep if nothing
// moved) until done(); `feed` runs before each turn. Returns the CPU time of the turns that
// moved something: the work itself, without the polls in between (which depend on how fast
// the farm answers, not on the master).
double drive(Dispatcher& d, const std::function<bool()>& done, const std::function<void()>& feed,
             double limit_seconds) {
    Backoff backoff;
    auto start = Clock::now();
    double busy = 0;
    while (!done()) {
        if (seconds_since(start) > limit_seconds)
            throw std::runtime_error("no progress within " + std::to_string(limit_seconds) + " s");
        double before = thread_cpu_seconds();
        feed();
        if (d.step(Clock::now())) {
            busy += thread_cpu_seconds() - before;
            backoff.reset();
        } else {
            bool spin = d.results_within(backoff.policy().spin_for);  // as Master::loop
            std::this_thread::sleep_for(backoff.next_delay(Clock::now(), spin));
        }
    }
    return busy;
}

struct Sim {
    std::shared_ptr<SimNetwork> net = std::make_shared<SimNetwork>();
    SimTransport transport{net};
    SimLauncher launcher;
    Farm farm;
    Dispatcher dispatcher;
    std::shared_ptr<JobTable> jobs = std::make_shared<JobTable>();
    PoolId pool = 0;
    JobId next_job = 1;

    Sim(std::size_t workers, DispatcherOptions options)
        : launcher(workers), farm(net, workers, 0.1), dispatcher(transport, launcher, options) {}

    void submit() {
        JobId id = next_job++;
        jobs->create(id, 0, false);
        jobs->forget(id);  // dropped once finished, as a Job nobody keeps
        dispatcher.submit(pool, id, "f", "bundle", "args");
    }
};

DispatcherOptions master_options() {
    DispatcherOptions options;
    ProcessIdentity self = this_process();
    options.master_pid = self.pid;
    options.master_host = self.host;
    return options;
}

void start_pool(Sim& sim, std::size_t workers) {
    PoolSpec spec;
    spec.ncpus = workers;
    spec.slots_per_worker = 64;
    sim.pool = sim.dispatcher.create_pool(spec, sim.jobs);
    auto joined = [&] {
        PoolStats stats = sim.dispatcher.stats(sim.pool);
        return stats.starting == 0 && stats.per_worker.size() == workers;
    };
    drive(sim.dispatcher, joined, [] {}, 120.0);
}

void measure_idle(Sim& sim, double seconds, Row& row) {
    std::uint64_t beats = sim.farm.heartbeats_sent();
    double cpu = thread_cpu_seconds();
    auto start = Clock::now();
    drive(sim.dispatcher, [&] { return seconds_since(start) >= seconds; }, [] {}, seconds + 10);
    double wall = seconds_since(start);
    row.idle_cpu_percent = 100.0 * (thread_cpu_seconds() - cpu) / wall;
    row.heartbeats_per_s = static_cast<double>(sim.farm.heartbeats_sent() - beats) / wall;
}

// `window` jobs in flight (closed loop) until `total` finished; CPU per job and jobs/s.
void measure_jobs(Sim& sim, std::size_t total, std::size_t window, double& us, double& rate) {
    std::size_t submitted = 0;
    auto feed = [&] {
        while (submitted < total && sim.jobs->unfinished() < window) {
            sim.submit();
            ++submitted;
        }
    };
    auto start = Clock::now();
    auto done = [&] { return submitted == total && sim.jobs->unfinished() == 0; };
    double busy = drive(sim.dispatcher, done, feed, 600.0);
    double wall = seconds_since(start);
    us = 1e6 * busy / static_cast<double>(total);
    rate = static_cast<double>(total) / wall;
}

Row run(std::size_t workers, const Options& options) {
    Row row;
    row.workers = workers;
    double heap_before = heap_kib();
    Sim sim(workers, master_options());
    start_pool(sim, workers);
    row.heap_kib_per_worker = (heap_kib() - heap_before) / static_cast<double>(workers);
    measure_idle(sim, options.idle_seconds, row);
    std::size_t total = std::max(options.min_jobs, 5 * workers);
    measure_jobs(sim, total, workers, row.single_us, row.single_jobs_per_s);
    sim.farm.set_job_seconds(1e-5);
    measure_jobs(sim, total, total, row.pipelined_us, row.pipelined_jobs_per_s);
    row.lost = sim.dispatcher.stats(sim.pool).workers_lost;
    sim.dispatcher.shutdown(std::chrono::seconds(10));
    return row;
}

Options parse(int argc, char** argv) {
    Options options;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw std::runtime_error(arg + " needs a value");
            return argv[++i];
        };
        if (arg == "--workers") {
            options.sizes.clear();
            std::stringstream list(value());
            for (std::string item; std::getline(list, item, ',');) options.sizes.push_back(std::stoul(item));
        } else if (arg == "--idle-seconds") {
            options.idle_seconds = std::stod(value());
        } else if (arg == "--min-jobs") {
            options.min_jobs = std::stoul(value());
        } else if (arg == "--json") {
            options.json = value();
        } else if (arg == "--check") {
            options.check = true;
        } else {
            throw std::runtime_error("unknown option " + arg +
                                     " (--workers 10,100 --idle-seconds S --min-jobs J "
                                     "--json FILE --check)");
        }
    }
    return options;
}

void print(const std::vector<Row>& rows, const std::string& json) {
    std::printf("%8s %10s %10s %11s %11s %12s %12s %9s %5s\n", "workers", "idle cpu%",
                "beats/s", "single us", "single j/s", "pipelined us", "pipelined j/s",
                "KiB/wkr", "lost");
    for (const Row& r : rows)
        std::printf("%8zu %10.2f %10.0f %11.2f %11.0f %12.2f %12.0f %9.1f %5llu\n", r.workers,
                    r.idle_cpu_percent, r.heartbeats_per_s, r.single_us, r.single_jobs_per_s,
                    r.pipelined_us, r.pipelined_jobs_per_s, r.heap_kib_per_worker,
                    static_cast<unsigned long long>(r.lost));
    if (json.empty()) return;
    std::ofstream out(json);
    out << "[";
    for (std::size_t i = 0; i < rows.size(); ++i) {
        const Row& r = rows[i];
        out << (i ? ",\n " : "") << "{\"workers\": " << r.workers
            << ", \"idle_cpu_percent\": " << r.idle_cpu_percent
            << ", \"heartbeats_per_s\": " << r.heartbeats_per_s
            << ", \"single_us_per_job\": " << r.single_us
            << ", \"single_jobs_per_s\": " << r.single_jobs_per_s
            << ", \"pipelined_us_per_job\": " << r.pipelined_us
            << ", \"pipelined_jobs_per_s\": " << r.pipelined_jobs_per_s
            << ", \"heap_kib_per_worker\": " << r.heap_kib_per_worker << ", \"lost\": " << r.lost
            << "}";
    }
    out << "]\n";
}

}  // namespace

int main(int argc, char** argv) {
    try {
        Options options = parse(argc, argv);
        std::vector<Row> rows;
        for (std::size_t workers : options.sizes) {
            rows.push_back(run(workers, options));
            std::fflush(stdout);
        }
        print(rows, options.json);
        for (const Row& r : rows)
            if (options.check && r.lost > 0) {
                std::fprintf(stderr, "sim_scale: %llu worker(s) lost at %zu workers\n",
                             static_cast<unsigned long long>(r.lost), r.workers);
                return 1;
            }
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "sim_scale: %s\n", e.what());
        return 1;
    }
}
