// ppmpi/core/log.hpp: where the C++ side's messages go.
//
// The master's messages belong in Python's `logging` under the name "ppmpi" (the user decides
// what is shown), but the dispatcher thread must never take the GIL. So a message goes to a
// sink: by default stderr, and in the Python extension a bounded queue that a Python thread
// drains into logging (bindings.cpp). Debug messages are built only when debug is on.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace ppmpi {

// The numbers are Python's logging levels, so records cross the binding unchanged.
enum class LogLevel : int { Debug = 10, Info = 20, Warning = 30, Error = 40 };

using LogSink = std::function<void(LogLevel, const std::string&)>;

// Replaces the process-wide sink (empty: back to stderr). Thread-safe.
void set_log_sink(LogSink sink);
// Messages below this level are dropped before they are built (default: Info).
void set_log_level(LogLevel level);
bool log_enabled(LogLevel level);
void log_message(LogLevel level, const std::string& text);

inline void log_debug(const std::string& text) { log_message(LogLevel::Debug, text); }
inline void log_info(const std::string& text) { log_message(LogLevel::Info, text); }
inline void log_warning(const std::string& text) { log_message(LogLevel::Warning, text); }
inline void log_error(const std::string& text) { log_message(LogLevel::Error, text); }

// A bounded FIFO of records for a reader on another thread. When full, the oldest record is
// dropped and counted, so a flood can neither grow memory nor block the writer.
class LogQueue {
  public:
    struct Record {
        LogLevel level;
        std::string text;
    };
    explicit LogQueue(std::size_t capacity = 10000) : capacity_(capacity) {}

    void push(LogLevel level, std::string text);
    // Waits up to `timeout` for records; returns them all (and a note of any dropped).
    std::vector<Record> pop_all(std::chrono::duration<double> timeout);
    void wake();

  private:
    std::size_t capacity_;
    std::mutex mutex_;
    std::condition_variable changed_;
    std::deque<Record> records_;
    std::size_t dropped_ = 0;
    bool woken_ = false;
};

}  // namespace ppmpi
