// The real master pieces end to end, without the Python package on the master: a ppmpi::Master
// built with mpi_master_environment (its dispatcher thread owns MPI), a pool of ppmpi-worker
// processes, jobs submitted as bindings.cpp's PoolHandle::submit does, results waited for on
// the JobTable and unpickled here.
//
// The function bundles and args are pickled Python, so this process embeds CPython too (as
// the real master, a python3 driver, does) and makes them with cloudpickle exactly like
// ppmpi/_serialize.py: bundle = cloudpickle.dumps((func, depfuncs, modules, fresh, init)), key = its
// blake2b digest, args = cloudpickle.dumps(args_tuple).
//
// Usage: mpi_master_test <ppmpi-worker path> <ncpus>
//  - MPMD:  mpiexec -n 1 mpi_master_test W N : -n N ppmpi-worker   (the world ranks serve)
//  - spawn: mpi_master_test W N, alone                                (N workers spawned)
// Pool 1 has the N workers and runs jobs of several functions (results, output, an exception,
// sys.exit, a multi-MB argument); once it is destroyed, pool 2 spawns one fresh worker
// (MPI_Comm_spawn, under mpiexec as well) and runs a few more; pool 3 is resized 1 -> 2 -> 1
// spawned workers between its jobs. Then the master stops; the world ranks (ppmpi-worker under
// MPMD) must end with status 0 after its Release, which mpiexec's exit status shows.
// Returns the number of failed checks.
#include "ppmpi/core/errors.hpp"
#include "ppmpi/core/job_table.hpp"
#include "ppmpi/master/master.hpp"
#include "ppmpi/mpi/mpi_env.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <pybind11/embed.h>
#include <set>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace py = pybind11;
using namespace py::literals;
using namespace ppmpi;
using Seconds = std::chrono::duration<double>;

namespace {

int g_failures = 0;

#define EXPECT(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            ++g_failures;                                                                          \
            std::fprintf(stderr, "%s:%d: EXPECT(%s) failed\n", __FILE__, __LINE__, #cond);         \
        }                                                                                          \
    } while (0)

constexpr Seconds kCallTimeout{60.0};
constexpr Seconds kJobsTimeout{60.0};

std::string this_host() {
    char name[256] = {0};
    ::gethostname(name, sizeof(name) - 1);
    return name;
}

struct Bundle {
    std::string key;
    Bytes data;
};

// GIL held. `source` defines `func` (pickled by value: its module is __main__).
Bundle make_bundle(const std::string& source,
                   const std::string& func,
                   const std::vector<std::string>& modules) {
    py::dict ns = py::module_::import("__main__").attr("__dict__");
    py::exec(source, ns);
    py::list mods;
    for (const auto& m : modules)
        mods.append(m);
    py::object data =
        py::module_::import("cloudpickle")
            .attr("dumps")(py::make_tuple(ns[func.c_str()], py::tuple(), py::tuple(mods), false, py::none()));
    std::string key = py::module_::import("hashlib")
                          .attr("blake2b")(data, "digest_size"_a = 16)
                          .attr("hexdigest")()
                          .cast<std::string>();
    return Bundle{key, data.cast<std::string>()};
}

// GIL held.
Bytes make_args(const std::string& expression) {
    return py::module_::import("cloudpickle")
        .attr("dumps")(py::eval(expression))
        .cast<std::string>();
}

// What bindings.cpp's PoolHandle::submit does: the job enters the table first, then the
// dispatcher thread queues it; a submit that fails there fails the job.
JobId submit(Master& master,
             PoolId pool,
             const std::shared_ptr<JobTable>& jobs,
             const Bundle& bundle,
             Bytes args) {
    JobId job = master.next_job_id();
    jobs->create(job, 0, false);
    master.post(
        [=, key = bundle.key, data = bundle.data, args = std::move(args)](Dispatcher& d) mutable {
            try {
                d.submit(pool, job, key, std::move(data), std::move(args));
            } catch (const std::exception& e) {
                jobs->finish(job, JobOutcome{Outcome::Destroyed, {}, e.what(), {}, 0.0});
            }
        });
    return job;
}

struct Expected {
    std::string result_repr; // repr() of the result; for an error, the exception type name
    std::string output;
    bool error = false;
    std::string message; // for an error: a part of the report's message
};

Expected ok(std::string repr, std::string output = "") {
    Expected e;
    e.result_repr = std::move(repr);
    e.output = std::move(output);
    return e;
}

Expected error(std::string type, std::string message, std::string output = "") {
    Expected e;
    e.result_repr = std::move(type);
    e.message = std::move(message);
    e.output = std::move(output);
    e.error = true;
    return e;
}

// The jobs of one pool run, made while the GIL is held.
struct Plan {
    std::vector<std::pair<const Bundle*, Bytes>> jobs;
    std::vector<Expected> expected;
    std::size_t functions = 0; // distinct bundles
    void add(const Bundle& b, const std::string& args, Expected e) {
        jobs.emplace_back(&b, make_args(args));
        expected.push_back(std::move(e));
    }
};

struct PoolRun {
    std::vector<JobOutcome> outcomes;
    PoolStats stats;
};

struct PoolRef {
    PoolId id = 0;
    std::shared_ptr<JobTable> jobs;
};

PoolRef create_pool(Master& master, std::size_t ncpus) {
    PoolRef ref{0, std::make_shared<JobTable>()};
    PoolSpec spec;
    spec.ncpus = ncpus;
    spec.slots_per_worker = 2;
    spec.sys_path = {PPMPI_BUILD_PYTHON_DIR};
    auto jobs = ref.jobs;
    ref.id = master.call([spec, jobs](Dispatcher& d) { return d.create_pool(spec, jobs); },
                         kCallTimeout);
    return ref;
}

std::size_t pool_size(Master& master, const PoolRef& pool) {
    PoolId id = pool.id;
    return master.call([id](Dispatcher& d) { return d.pool_size(id); }, kCallTimeout);
}

PoolStats pool_stats(Master& master, const PoolRef& pool) {
    PoolId id = pool.id;
    return master.call([id](Dispatcher& d) { return d.stats(id); }, kCallTimeout);
}

// Submits the plan's jobs (from index `first` on) and waits for them, bounded.
void run_jobs(
    Master& master, const PoolRef& pool, const Plan& plan, PoolRun& out, std::size_t first = 0) {
    out.outcomes.resize(plan.jobs.size());
    std::map<JobId, std::size_t> index_of;
    for (std::size_t i = first; i < plan.jobs.size(); ++i) {
        JobId job = submit(master, pool.id, pool.jobs, *plan.jobs[i].first, plan.jobs[i].second);
        index_of[job] = i;
    }
    auto deadline = std::chrono::steady_clock::now() + kJobsTimeout;
    for (const auto& [job, i] : index_of) {
        Seconds left = deadline - std::chrono::steady_clock::now();
        if (left.count() <= 0 || !pool.jobs->wait(job, left)) {
            std::fprintf(stderr, "job %llu did not finish in time\n",
                         static_cast<unsigned long long>(job));
            ++g_failures;
            continue;
        }
        auto outcome = pool.jobs->take(job);
        EXPECT(outcome.has_value());
        if (outcome) out.outcomes[i] = std::move(*outcome);
    }
    EXPECT(pool.jobs->unfinished() == 0);
}

// Every worker gets welcomed (it then has a per-worker stats entry); bounded.
PoolStats stats_once_welcomed(Master& master, const PoolRef& pool, std::size_t workers) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    for (;;) {
        PoolStats stats = pool_stats(master, pool);
        if (stats.per_worker.size() >= workers || std::chrono::steady_clock::now() > deadline)
            return stats;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
}

// Destroys the pool and checks that it takes no more jobs.
void destroy_pool(Master& master, const PoolRef& pool, const Plan& plan) {
    PoolId id = pool.id;
    master.call([id](Dispatcher& d) { d.destroy_pool(id); }, kCallTimeout);
    // A destroyed pool takes no more jobs: the submit fails on the dispatcher thread...
    const Bundle& any = *plan.jobs.front().first;
    bool refused = false;
    try {
        master.call([id, &any](Dispatcher& d) { d.submit(id, 999999, any.key, any.data, ""); },
                    kCallTimeout);
    } catch (const DestroyedError&) {
        refused = true;
    }
    EXPECT(refused);
    // ... and so the job fails in the table, as PoolHandle::submit sees it.
    JobId late = submit(master, id, pool.jobs, any, plan.jobs.front().second);
    EXPECT(pool.jobs->wait(late, kCallTimeout));
    auto late_outcome = pool.jobs->take(late);
    EXPECT(late_outcome && late_outcome->outcome == Outcome::Destroyed);
}

// With the GIL released: a pool of `ncpus` workers runs the plan, then is destroyed.
PoolRun run_pool(Master& master, std::size_t ncpus, const Plan& plan) {
    PoolRun out;
    PoolRef pool = create_pool(master, ncpus);
    EXPECT(pool_size(master, pool) == ncpus);
    run_jobs(master, pool, plan, out);
    out.stats = stats_once_welcomed(master, pool, ncpus);
    EXPECT(out.stats.pending == 0);
    EXPECT(out.stats.running == 0);
    destroy_pool(master, pool, plan);
    return out;
}

// With the GIL released: a pool that grows from 1 to 2 spawned workers (two spawns, so two
// intercommunicators), runs the first half of the plan, shrinks back to 1 (one worker says
// Goodbye and its intercommunicator is disconnected while the other stays in use), runs the
// second half, and is destroyed.
PoolRun run_resized_pool(Master& master, const Plan& plan) {
    PoolRun out;
    PoolRef pool = create_pool(master, 1);
    PoolId id = pool.id;
    master.call([id](Dispatcher& d) { d.resize_pool(id, 2); }, kCallTimeout);
    EXPECT(pool_size(master, pool) == 2);
    std::size_t half = plan.jobs.size() / 2;
    Plan first_half;
    first_half.jobs.assign(plan.jobs.begin(), plan.jobs.begin() + half);
    first_half.expected.assign(plan.expected.begin(), plan.expected.begin() + half);
    run_jobs(master, pool, first_half, out);
    PoolStats grown = stats_once_welcomed(master, pool, 2);
    EXPECT(grown.per_worker.size() == 2);

    master.call([id](Dispatcher& d) { d.resize_pool(id, 1); }, kCallTimeout);
    EXPECT(pool_size(master, pool) == 1);
    run_jobs(master, pool, plan, out, half);
    out.stats = pool_stats(master, pool);
    EXPECT(out.stats.workers == 1);
    EXPECT(out.stats.pending == 0);
    EXPECT(out.stats.running == 0);
    destroy_pool(master, pool, plan);
    return out;
}

// GIL held: the outcomes against the plan, and the statistics against the outcomes.
// `ncpus`: the pool's size at the end; `workers`: how many workers it ever had.
void check_pool_run(const PoolRun& run, const Plan& plan, std::size_t ncpus, std::size_t workers) {
    py::module_ pickle = py::module_::import("pickle");
    std::set<std::string> workers_seen;
    for (std::size_t i = 0; i < run.outcomes.size(); ++i) {
        const JobOutcome& o = run.outcomes[i];
        const Expected& e = plan.expected[i];
        if (o.payload.empty()) {
            std::fprintf(stderr, "job #%zu: no payload (outcome %d, %s)\n", i,
                         static_cast<int>(o.outcome), o.message.c_str());
            ++g_failures;
            continue;
        }
        workers_seen.insert(o.worker);
        py::tuple loaded = pickle.attr("loads")(py::bytes(o.payload));
        EXPECT(loaded.size() == 2);
        if (e.error) {
            EXPECT(o.outcome == Outcome::RemoteError);
            py::dict report = loaded[0];
            std::string type = report["type"].cast<std::string>();
            std::string message = report["message"].cast<std::string>();
            std::string traceback = report["traceback"].cast<std::string>();
            if (type != e.result_repr || message.find(e.message) == std::string::npos)
                std::fprintf(stderr, "job #%zu: got %s: %s, expected %s: ...%s...\n", i,
                             type.c_str(), message.c_str(), e.result_repr.c_str(),
                             e.message.c_str());
            EXPECT(type == e.result_repr);
            EXPECT(message.find(e.message) != std::string::npos);
            EXPECT(traceback.find(type) != std::string::npos);
            EXPECT(!report["exc"].is_none());
            EXPECT(report["where"].cast<std::string>() == o.worker);
        } else {
            EXPECT(o.outcome == Outcome::Ok);
            std::string got = py::repr(loaded[0]).cast<std::string>();
            if (got != e.result_repr)
                std::fprintf(stderr, "job #%zu: got %s, expected %s\n", i, got.c_str(),
                             e.result_repr.c_str());
            EXPECT(got == e.result_repr);
        }
        EXPECT(loaded[1].cast<std::string>() == e.output);
        EXPECT(!o.worker.empty());
        EXPECT(o.seconds >= 0.0);
    }

    // Statistics: every job counted once, each function sent at most once per worker.
    const PoolStats& stats = run.stats;
    EXPECT(stats.workers == ncpus);
    // A job taken back from behind a busy worker (protocol step 4) is sent twice.
    EXPECT(stats.tasks_sent == plan.jobs.size() + stats.jobs_taken_back);
    EXPECT(stats.function_defs_sent >= plan.functions);
    EXPECT(stats.function_defs_sent <= plan.functions * workers);
    EXPECT(stats.per_worker.size() == workers);
    std::uint64_t counted = 0;
    std::set<std::string> labels;
    for (const WorkerStats& w : stats.per_worker) {
        counted += w.jobs;
        labels.insert(w.label);
        std::printf("  worker %s: %llu jobs, %.3f s\n", w.label.c_str(),
                    static_cast<unsigned long long>(w.jobs), w.seconds);
    }
    EXPECT(counted == plan.jobs.size());
    EXPECT(labels.size() == workers);
    for (const std::string& w : workers_seen)
        EXPECT(labels.count(w) == 1);
}

int run(const std::string& worker_path, std::size_t ncpus) {
    // --- The Python side of the master: bundles and args (GIL held) ---
    py::exec("square = lambda x: x * x");
    Bundle square = make_bundle("", "square", {});
    Bundle work = make_bundle("def work(i):\n"
                              "    print('job', i)\n"
                              "    return math.factorial(i)\n",
                              "work", {"math"});
    Bundle fail = make_bundle(
        "def fail(x):\n    print('failing')\n    raise ValueError('bad %d' % x)\n", "fail", {});
    Bundle size = make_bundle("def size(b):\n    return len(b)\n", "size", {});
    Bundle quit = make_bundle("import sys\ndef quit(code):\n    sys.exit(code)\n", "quit", {});

    // Pool 1: the world ranks (MPMD) or spawned workers (singleton).
    Plan first;
    first.functions = 5;
    for (int i = 0; i < 50; ++i)
        first.add(square, "(" + std::to_string(i) + ",)", ok(std::to_string(i * i)));
    py::object factorial = py::module_::import("math").attr("factorial");
    for (int i = 0; i < 10; ++i)
        first.add(
            work, "(" + std::to_string(i) + ",)",
            ok(py::repr(factorial(i)).cast<std::string>(), "job " + std::to_string(i) + "\n"));
    first.add(fail, "(7,)", error("ValueError", "bad 7", "failing\n"));
    first.add(size, "(b'z' * 3000000,)", ok("3000000"));
    // sys.exit in a job fails that job only; the worker goes on serving the jobs after it.
    first.add(quit, "(4,)", error("JobExit", "sys.exit(4)"));
    for (int i = 50; i < 60; ++i)
        first.add(square, "(" + std::to_string(i) + ",)", ok(std::to_string(i * i)));

    // Pool 2, after pool 1 is gone: one worker, always spawned (under mpiexec too, where the
    // world ranks are used up by pool 1).
    Plan second;
    second.functions = 1;
    for (int i = 0; i < 5; ++i)
        second.add(square, "(" + std::to_string(i + 100) + ",)",
                   ok(std::to_string((i + 100) * (i + 100))));

    // Pool 3: spawned workers, resized 1 -> 2 -> 1 between jobs.
    Plan third;
    third.functions = 2;
    for (int i = 0; i < 10; ++i) {
        third.add(square, "(" + std::to_string(i + 200) + ",)",
                  ok(std::to_string((i + 200) * (i + 200))));
        third.add(
            work, "(" + std::to_string(i) + ",)",
            ok(py::repr(factorial(i)).cast<std::string>(), "job " + std::to_string(i) + "\n"));
    }

    PoolRun run1, run2, run3;
    {
        py::gil_scoped_release released; // from here on only the dispatcher thread works

        DispatcherOptions options;
        options.master_pid = ::getpid();
        options.master_host = this_host();
        options.heartbeat = std::chrono::milliseconds(200);
        options.master_timeout = std::chrono::milliseconds(30000);
        Master master(mpi_master_environment(worker_path), options, kCallTimeout);
        EXPECT(master.running());

        run1 = run_pool(master, ncpus, first);
        run2 = run_pool(master, 1, second);
        run3 = run_resized_pool(master, third);

        master.stop(Seconds(15.0));
        EXPECT(!master.running());
        bool closed = false;
        try {
            master.post([](Dispatcher&) {});
        } catch (const DestroyedError&) {
            closed = true;
        }
        EXPECT(closed);
    }

    // --- Check the outcomes (GIL held again) ---
    std::printf("pool 1 (%zu workers):\n", ncpus);
    check_pool_run(run1, first, ncpus, ncpus);
    std::printf("pool 2 (1 spawned worker):\n");
    check_pool_run(run2, second, 1, 1);
    std::printf("pool 3 (spawned, resized 1 -> 2 -> 1):\n");
    check_pool_run(run3, third, 1, 2);
    return g_failures;
}

} // namespace

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s <ppmpi-worker> <ncpus>\n", argv[0]);
        return 2;
    }
    const std::string worker_path = argv[1];
    const std::size_t ncpus = std::strtoul(argv[2], nullptr, 10);
    // Under mpiexec, the world must be this master plus exactly the serving ranks.
    if (const char* size = std::getenv("OMPI_COMM_WORLD_SIZE")) {
        if (std::strtoul(size, nullptr, 10) != ncpus + 1) {
            std::fprintf(stderr, "world size %s but ncpus %zu: expected ncpus + 1 ranks\n", size,
                         ncpus);
            return 2;
        }
    }
    // As in ppmpi-worker: importing anything of ppmpi here must not start a master of its own.
    ::setenv("PPMPI_IN_WORKER", "1", 1);
    int failures = 0;
    {
        py::scoped_interpreter interpreter;
        py::module_::import("sys").attr("path").attr("insert")(0, PPMPI_BUILD_PYTHON_DIR);
        try {
            failures = run(worker_path, ncpus);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "mpi_master_test: exception: %s\n", e.what());
            failures = g_failures + 1;
        }
    }
    std::printf("mpi_master_test: %zu workers, %d failed checks\n", ncpus, failures);
    return failures;
}
