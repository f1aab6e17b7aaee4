// _core: the compiled half of the ppmpi package. Thin on purpose: it turns Python calls into
// Master commands and JobTable waits (GIL released), and C++ errors into Python exceptions.
// The pp-compatible API and all argument checking live in python/ppmpi.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <unistd.h>

#include <boost/version.hpp>

#include <exception>
#include <optional>


#include "ppmpi/core/errors.hpp"
#include "ppmpi/core/heartbeat.hpp"
#include "ppmpi/core/log.hpp"
#include "ppmpi/master/master.hpp"
#include "ppmpi/mpi/mpi_env.hpp"
#include "ppmpi/python/contract.hpp"
#include "ppmpi/python/py_buffers.hpp"
#include "ppmpi/python/python_job_runner.hpp"
#include "ppmpi/worker/worker.hpp"

namespace py = pybind11;
using namespace ppmpi;
using namespace pybind11::literals;

namespace {

// Runs f() with the GIL released. Not pybind11's gil_scoped_release: when the interpreter is
// finalizing, CPython ends a daemon thread that retakes the GIL with pthread_exit, and that
// forced unwind must start neither inside a (noexcept) destructor nor inside a catch handler
// (both abort the process), so the GIL is retaken outside any try.
template <class F> auto without_gil(F&& f) -> decltype(f()) {
    using Result = decltype(f());
    PyThreadState* state = PyEval_SaveThread();
    std::exception_ptr error;
    if constexpr (std::is_void_v<Result>) {
        try {
            f();
        } catch (...) {
            error = std::current_exception();
        }
        PyEval_RestoreThread(state);
        if (error) std::rethrow_exception(error);
    } else {
        std::optional<Result> result;
        try {
            result.emplace(f());
        } catch (...) {
            error = std::current_exception();
        }
        PyEval_RestoreThread(state);
        if (error) std::rethrow_exception(error);
        return std::move(*result);
    }
}

// One Python Server: its pool id in the dispatcher and its job table.
class PoolHandle {
  public:
    PoolHandle(std::shared_ptr<Master> master, PoolId id, std::shared_ptr<JobTable> jobs)
        : master_(std::move(master)), id_(id), jobs_(std::move(jobs)) {}

    // nranks: 0 for an ordinary job, else a parallel job's (gangs.hpp).
    JobId submit(std::string key, py::bytes bundle, py::bytes args, py::list arg_buffers,
                 int group, bool notify, double timeout, std::size_t nranks) {
        JobId job = create(group, notify);
        dispatch(job, std::move(key), bundle, args, arg_buffers, timeout, nranks);
        return job;
    }

    JobId create(int group, bool notify) {
        JobId job = master_->next_job_id();
        jobs_->create(job, group, notify);
        return job;
    }

    void dispatch(JobId job, std::string key, py::bytes bundle, py::bytes args,
                  py::list arg_buffers, double timeout, std::size_t nranks = 0) {
        release_python_buffers();
        Buffers buffers = buffers_from_python(arg_buffers);
        std::string bundle_bytes = bundle, args_bytes = args;
        PoolId pool = id_;
        auto jobs = jobs_;
        auto limit = std::chrono::duration_cast<Clock::duration>(
            std::chrono::duration<double>(timeout > 0 ? timeout : 0.0));
        master_->post([=, bundle = std::move(bundle_bytes), args = std::move(args_bytes),
                       buffers = std::move(buffers)](Dispatcher& d) mutable {
            try {
                d.submit(pool, job, key, std::move(bundle), std::move(args), limit,
                         std::move(buffers), nranks);
            } catch (const std::exception& e) {
                jobs->finish(job, JobOutcome{Outcome::Destroyed, {}, e.what(), {}, 0.0});
            }
        });
        master_->help_if_stalled(/*lone=*/jobs_->unfinished() == 1);
    }

    py::object take(JobId job) {
        release_python_buffers();
        auto outcome = jobs_->take(job);
        if (!outcome) return py::none();
        return make_taken_outcome(static_cast<int>(outcome->outcome), py::bytes(outcome->payload),
                                  outcome->message, outcome->worker, outcome->seconds,
                                  buffers_to_python(std::move(outcome->buffers)));
    }

    // Waits up to `timeout` s for done(), GIL released: first by driving the dispatcher on this
    // thread (a reply that is microseconds away then needs no thread hand-off), then on the job
    // table. `wait` is the job table's own wait, given the time left.
    template <class Done, class Wait> bool wait_until(Done done, Wait wait, double timeout) {
        return without_gil([&] {
            auto start = std::chrono::steady_clock::now();
            if (master_->drive_until(done, Master::Duration(timeout))) return true;
            Master::Duration spent = std::chrono::steady_clock::now() - start;
            return wait(JobTable::Duration(std::max(0.0, timeout - spent.count())));
        });
    }

    bool wait_job(JobId job, double timeout) {
        if (jobs_->is_done(job)) return true;  // taken as it came: no GIL round trip
        return wait_until([&] { return jobs_->is_done(job); },
                          [&](JobTable::Duration left) { return jobs_->wait(job, left); }, timeout);
    }

    template <class R, class F> R on_dispatcher(F command, double timeout) {
        PoolId pool = id_;
        return without_gil([&] {
            return master_->call([pool, command](Dispatcher& d) { return command(d, pool); },
                                 Master::Duration(timeout));
        });
    }

    std::shared_ptr<Master> master_;
    PoolId id_;
    std::shared_ptr<JobTable> jobs_;
};

py::dict stats_to_dict(const PoolStats& s) {
    py::list workers;
    for (const WorkerStats& w : s.per_worker)
        workers.append(py::make_tuple(w.label, w.jobs, w.seconds));
    py::list running;
    for (const RunningJob& r : s.running_jobs)
        running.append(py::make_tuple(r.job, r.worker, r.seconds));
    py::dict d;
    d["running_jobs"] = running;
    d["workers"] = s.workers;
    d["workers_starting"] = s.starting;
    d["pending"] = s.pending;
    d["running"] = s.running;
    d["per_worker"] = workers;
    d["tasks_sent"] = s.tasks_sent;
    d["function_defs_sent"] = s.function_defs_sent;
    d["function_bytes_sent"] = s.function_bytes_sent;
    d["workers_lost"] = s.workers_lost;
    d["start_failures"] = s.start_failures;
    d["start_error"] = s.start_error;
    d["jobs_requeued"] = s.jobs_requeued;
    d["jobs_taken_back"] = s.jobs_taken_back;
    return d;
}

std::shared_ptr<Master> start_master(const std::string& worker_path, int heartbeat_ms,
                                     int master_timeout_ms, double start_timeout,
                                     std::vector<std::string> worker_args) {
    DispatcherOptions options;
    options.master_pid = ::getpid();
    options.master_host = this_host_name();
    options.heartbeat = std::chrono::milliseconds(heartbeat_ms);
    options.master_timeout = std::chrono::milliseconds(master_timeout_ms);
    auto master = without_gil([&] {
        auto bound = mpi_start_bound(std::chrono::duration_cast<std::chrono::milliseconds>(
            Master::Duration(start_timeout)));
        return std::make_shared<Master>(mpi_master_environment(worker_path, worker_args), options,
                                        bound);
    });
    prefault_written_memory(); // after MPI's fork: the first jobs take no page faults (buffer.hpp)
    return master;
}

int serve_worker() {
    PythonJobRunner runner;
    WorkerHost host(mpi_worker_environment(), mpi_worker_options());
    return without_gil([&] { return host.serve(runner); });
}

// C++ messages of this process, on their way to Python's logging (see log.hpp).
LogQueue& python_log_queue() {
    static LogQueue queue;
    return queue;
}

void bind_logging(py::module_& m) {
    m.def("capture_logs", [](bool on) {
        if (on) {
            set_log_sink([](LogLevel level, const std::string& text) {
                python_log_queue().push(level, text);
            });
        } else {
            set_log_sink(nullptr);
            python_log_queue().wake();
        }
    });
    m.def("set_log_level", [](int level) { set_log_level(static_cast<LogLevel>(level)); });
    m.def("next_log_records", [](double timeout) {
        auto records = without_gil(
            [&] { return python_log_queue().pop_all(std::chrono::duration<double>(timeout)); });
        py::list out;
        for (auto& r : records) out.append(py::make_tuple(static_cast<int>(r.level), r.text));
        return out;
    });
}

void bind_master(py::module_& m) {
    py::class_<Master, std::shared_ptr<Master>>(m, "Master")
        .def(py::init(&start_master), py::arg("worker_path"),
             py::arg("heartbeat_ms") = Welcome{}.heartbeat_ms,
             py::arg("master_timeout_ms") = Welcome{}.master_timeout_ms,
             py::arg("start_timeout") = 120.0,
             py::arg("worker_args") = std::vector<std::string>{})
        .def("create_pool",
             [](std::shared_ptr<Master> self, std::size_t ncpus, std::size_t slots,
                std::vector<std::string> sys_path, std::string cwd, double worker_timeout,
                std::size_t max_retries, double timeout) {
                 auto jobs = std::make_shared<JobTable>();
                 PoolSpec spec;
                 spec.ncpus = ncpus;
                 spec.slots_per_worker = slots;
                 spec.sys_path = std::move(sys_path);
                 spec.cwd = std::move(cwd);
                 spec.worker_timeout =
                     std::chrono::milliseconds(static_cast<std::int64_t>(worker_timeout * 1000.0));
                 spec.max_retries = max_retries;
                 PoolId id = without_gil([&] {
                     return self->call(
                         [spec, jobs](Dispatcher& d) { return d.create_pool(spec, jobs); },
                         Master::Duration(timeout));
                 });
                 return PoolHandle(self, id, jobs);
             })
        .def("stop",
             [](Master& self, double grace) {
                 return without_gil([&] { return self.stop(Master::Duration(grace)); });
             },
             py::arg("grace") = 5.0)
        .def_property_readonly("running", &Master::running);
}

// Remote servers (dispatcher.hpp, dispatcher_links.cpp), a client's side: the socket's
// descriptor passes to the dispatcher, which closes it.
void bind_pool_links(py::class_<PoolHandle>& pool) {
    using link::SessionKeys;
    pool.def("attach_link",
             [](PoolHandle& p, int fd, py::bytes send, py::bytes receive, std::string name,
                double timeout) {
                 SessionKeys keys{send, receive};
                 return p.on_dispatcher<int>(
                     [=](Dispatcher& d, PoolId id) { return d.attach_link(id, fd, keys, name); },
                     timeout);
             })
        .def("close_link",
             [](PoolHandle& p, int link, double timeout) {
                 p.on_dispatcher<void>([=](Dispatcher& d, PoolId) { d.close_link(link); }, timeout);
             })
        .def("link_status",
             [](PoolHandle& p, int link, double timeout) {
                 auto s = p.on_dispatcher<LinkStatus>(
                     [=](Dispatcher& d, PoolId) { return d.link_status(link); }, timeout);
                 return py::dict("known"_a = s.known, "ready"_a = s.ready, "ended"_a = s.ended,
                                 "reason"_a = s.reason, "host"_a = s.host, "pid"_a = s.pid,
                                 "workers"_a = s.workers, "jobs"_a = s.jobs,
                                 "seconds"_a = s.seconds);
             })
        .def("expect_links",
             [](PoolHandle& p, double limit, std::string servers, double timeout) {
                 auto wait = std::chrono::duration_cast<Clock::duration>(
                     std::chrono::duration<double>(limit));
                 p.on_dispatcher<void>(
                     [=](Dispatcher& d, PoolId id) { d.expect_links(id, wait, servers); }, timeout);
             });
}

// A ppmpi-server's side: its clients' sockets, relayed into its pool (link_relay.hpp).
void bind_served_links(py::class_<PoolHandle>& pool) {
    pool.def("serve_link",
             [](PoolHandle& p, int fd, py::bytes send, py::bytes receive, std::string where,
                double limit, double timeout) {
                 link::SessionKeys keys{send, receive};
                 auto each = std::chrono::duration_cast<Clock::duration>(
                     std::chrono::duration<double>(limit > 0 ? limit : 0.0));
                 p.on_dispatcher<void>(
                     [=](Dispatcher& d, PoolId id) { d.serve_link(id, fd, keys, where, each); },
                     timeout);
             })
        .def("link_sessions", [](PoolHandle& p, double timeout) {  // (count, events)
            return p.on_dispatcher<std::pair<std::size_t, std::vector<std::string>>>(
                [](Dispatcher& d, PoolId) { return d.link_sessions(); }, timeout);
        });
}

void bind_pool(py::module_& m) {
    py::class_<PoolHandle> pool(m, "PoolHandle");
    pool.def("submit", &PoolHandle::submit)
        .def("take", &PoolHandle::take)
        .def("wait", &PoolHandle::wait_job)
        .def("done", [](PoolHandle& p, JobId job) { return p.jobs_->is_done(job); })
        .def("take_when_done",
             [](PoolHandle& p, JobId job, double timeout) {
                 bool done = p.wait_job(job, timeout);
                 return done ? p.take(job) : py::object(py::none());
             })
        .def(
            "cancel",
            [](PoolHandle& p, JobId job, double timeout, bool running_too) {
                return p.on_dispatcher<bool>(
                    [job, running_too](Dispatcher& d, PoolId id) {
                        return d.cancel(id, job, running_too);
                    },
                    timeout);
            },
            py::arg("job"), py::arg("timeout"), py::arg("running_too") = true)
        .def("watch", [](PoolHandle& p, JobId job) { return p.jobs_->watch(job); })
        .def("forget", [](PoolHandle& p, JobId job) { p.jobs_->forget(job); })
        .def("next_notifications",
             [](PoolHandle& p, double timeout) {
                 return without_gil(
                     [&] { return p.jobs_->next_notifications(JobTable::Duration(timeout)); });
             })
        .def("mark_notified", [](PoolHandle& p, JobId job) { p.jobs_->mark_notified(job); })
        .def("wait_group",
             [](PoolHandle& p, int group, double timeout) {
                 return p.wait_until(
                     [&] { return p.jobs_->unfinished(group) == 0; },
                     [&](JobTable::Duration left) { return p.jobs_->wait_group(group, left); },
                     timeout);
             })
        .def("unfinished", [](PoolHandle& p, int group) { return p.jobs_->unfinished(group); })
        .def("resize",
             [](PoolHandle& p, std::size_t ncpus, double timeout) {
                 auto resize = [ncpus](Dispatcher& d, PoolId id) { d.resize_pool(id, ncpus); };
                 p.on_dispatcher<void>(resize, timeout);
             })
        .def("size",
             [](PoolHandle& p, double timeout) {
                 return p.on_dispatcher<std::size_t>(
                     [](Dispatcher& d, PoolId id) { return d.pool_size(id); }, timeout);
             })
        .def("stats",
             [](PoolHandle& p, double timeout) {
                 auto s = p.on_dispatcher<PoolStats>(
                     [](Dispatcher& d, PoolId id) { return d.stats(id); }, timeout);
                 return stats_to_dict(s);
             })
        .def("destroy", [](PoolHandle& p, double timeout) {
            p.on_dispatcher<void>([](Dispatcher& d, PoolId id) { d.destroy_pool(id); }, timeout);
        });
    bind_pool_links(pool);
    bind_served_links(pool);
}

}  // namespace

namespace ppmpi {
void bind_link(py::module_& m);  // link_bindings.cpp
}

PYBIND11_MODULE(_core, m) {
    keep_freed_memory_for_reuse();
    m.doc() = "ppmpi's compiled core: the MPI dispatcher thread and worker loop";
    auto base = py::register_exception<PpmpiError>(m, "PpmpiError", PyExc_RuntimeError);
    py::register_exception<MpiError>(m, "MpiError", base.ptr());
    py::register_exception<ProtocolError>(m, "ProtocolError", base.ptr());
    py::register_exception<UnknownJobError>(m, "UnknownJobError", PyExc_KeyError);
    bind_logging(m);
    bind_link(m);
    bind_master(m);
    bind_pool(m);
    m.def("serve_worker", &serve_worker,
          "Serve as a worker rank in this process until the master lets it go; returns the "
          "exit status.");
    m.def("apply_product_mpi_settings", &apply_product_mpi_settings);
    // For `python -m ppmpi --check` (_selfcheck.py).
    m.def("mpi_library_version", &mpi_library_version);
    m.def("mpi_thread_level", &mpi_thread_level);
    m.attr("BOOST_VERSION") = BOOST_LIB_VERSION;
    bind_contract(m);  // after PpmpiError: its DestroyedError translator must come later
}
