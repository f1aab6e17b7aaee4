// ppmpi/core/exit_watch.hpp: a bound on a wait that cannot be interrupted (an MPI call that may
// never return): past it, the process ends itself rather than stay behind for good.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

namespace ppmpi {

// Ends the process with `status`, after writing `why` to stderr, unless destroyed (the wait
// finished, or threw) within `bound`.
class ExitUnlessDoneWithin {
  public:
    ExitUnlessDoneWithin(std::chrono::seconds bound, int status, std::string why)
        : why_(std::move(why)), thread_([this, bound, status] {
              std::unique_lock<std::mutex> lock(mutex_);
              if (changed_.wait_for(lock, bound, [this] { return done_; })) return;
              std::fprintf(stderr, "%s\n", why_.c_str());
              std::fflush(nullptr);
              std::_Exit(status);
          }) {}
    ~ExitUnlessDoneWithin() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            done_ = true;
        }
        changed_.notify_all();
        thread_.join();
    }
    ExitUnlessDoneWithin(const ExitUnlessDoneWithin&) = delete;
    ExitUnlessDoneWithin& operator=(const ExitUnlessDoneWithin&) = delete;

  private:
    std::mutex mutex_;
    std::condition_variable changed_;
    bool done_ = false;
    std::string why_;
    std::thread thread_;  // last: starts once the members above exist
};

}  // namespace ppmpi
