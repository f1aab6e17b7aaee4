// ppmpi/core/cpu_wait.hpp: how long a thread has waited for a CPU while it could run.
//
// A job's wall time on a crowded host includes the time other processes held the CPUs: a no-op
// job among 128 workers on 2 cores took 1-2 ms. The scheduler sizes its pipeline and the number
// of workers it engages from job times (scheduler.hpp), and read that way a crowded host looks
// like long jobs, so every worker is engaged and each woken per job, which crowds it more.
// Workers report this wait with each result; the master learns job times without it.
#pragma once

namespace ppmpi {

// The calling thread's own counter: create and read it on one thread. Linux keeps it in
// /proc/thread-self/schedstat (second field, ns); elsewhere, or without that file, it reads 0.
class ThreadCpuWait {
  public:
    ThreadCpuWait();
    ~ThreadCpuWait();
    ThreadCpuWait(const ThreadCpuWait&) = delete;
    ThreadCpuWait& operator=(const ThreadCpuWait&) = delete;

    // Seconds this thread has been runnable but not running since it started.
    double seconds() const;

  private:
    int fd_ = -1;
};

}  // namespace ppmpi
