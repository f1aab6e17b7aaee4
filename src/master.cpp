#include "ppmpi/master.hpp"


#include "ppmpi/errors.hpp"
#include "ppmpi/log.hpp"

namespace ppmpi {

Master::Master(EnvironmentFactory factory, DispatcherOptions options, Duration start_timeout)
    : options_(std::move(options)) {
    std::promise<void> started;
    auto ready = started.get_future();
    thread_ = std::thread(&Master::run, this, std::move(factory), std::move(started));
    if (ready.wait_for(start_timeout) != std::future_status::ready) {
        // The thread is stuck in start-up (e.g. MPI_Init waiting for a launcher that never
        // answers). It cannot be interrupted; detach it and report.
        stopping_ = true;
        thread_.detach();
        throw PpmpiError("MPI start-up did not finish within " +
                         std::to_string(start_timeout.count()) + " s");
    }
    try {
        ready.get();
    } catch (...) {
        thread_.join();
        throw;
    }
}

Master::~Master() {
    try {
        stop(grace_);
    } catch (const std::exception& e) {
        log_error(std::string("error while stopping the dispatcher: ") + e.what());
    }
}

void Master::post(std::function<void(Dispatcher&)> command) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_) throw DestroyedError("the ppmpi runtime has been shut down");
        commands_.push_back(std::move(command));
    }
    wakeup_.notify();
}

void Master::stop(Duration grace) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        grace_ = grace;
        stopping_ = true;
    }
    wakeup_.notify();
    if (thread_.joinable()) thread_.join();
}

void Master::run(EnvironmentFactory factory, std::promise<void> started) {
    MasterEnvironment env;
    try {
        env = factory();
    } catch (...) {
        started.set_exception(std::current_exception());
        return;
    }
    running_ = true;
    started.set_value();
    bool clean = false;
    try {
        Dispatcher dispatcher(*env.transport, *env.launcher, options_);
        loop(dispatcher);
        drain_commands(dispatcher);
        clean = dispatcher.shutdown(std::chrono::duration_cast<Clock::duration>(grace_));
    } catch (const std::exception& e) {
        log_error(std::string("dispatcher stopped by an error: ") + e.what());
    }
    if (env.before_close) env.before_close(clean);
    env.launcher.reset();
    env.transport.reset();
    env.session.reset();
    running_ = false;
}

void Master::drain_commands(Dispatcher& dispatcher) {
    std::vector<std::function<void(Dispatcher&)>> batch;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        batch.swap(commands_);
    }
    for (auto& command : batch) {
        try {
            command(dispatcher);
        } catch (const std::exception& e) {
            // Commands that answer report through their promise; this is a fire-and-forget
            // one, and one bad command must not stop the loop that serves every job.
            log_error(std::string("dispatcher command failed: ") + e.what());
        }
    }
}

void Master::loop(Dispatcher& dispatcher) {
    Backoff backoff;
    while (!stopping_) {
        drain_commands(dispatcher);
        Clock::time_point now = Clock::now();
        if (dispatcher.step(now)) {
            backoff.reset();
            continue;
        }
        auto delay = backoff.next_delay(now);
        if (wakeup_.wait_for(delay)) backoff.reset();
    }
}

}  // namespace ppmpi
