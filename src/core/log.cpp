// Log sink and queue (see log.hpp).
#include "ppmpi/core/log.hpp"

#include <iostream>
#include <memory>

namespace ppmpi {
namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::Info)};
std::mutex g_sink_mutex;
std::shared_ptr<LogSink> g_sink;  // null: stderr

void to_stderr(LogLevel level, const std::string& text) {
    if (level < LogLevel::Warning) return;  // as Python's lastResort handler: warnings and up
    std::cerr << "ppmpi: " << (level >= LogLevel::Error ? "error: " : "warning: ") << text
              << std::endl;
}

}  // namespace

void set_log_sink(LogSink sink) {
    std::lock_guard<std::mutex> lock(g_sink_mutex);
    g_sink = sink ? std::make_shared<LogSink>(std::move(sink)) : nullptr;
}

void set_log_level(LogLevel level) { g_level = static_cast<int>(level); }

bool log_enabled(LogLevel level) { return static_cast<int>(level) >= g_level.load(); }

void log_message(LogLevel level, const std::string& text) {
    if (!log_enabled(level)) return;
    std::shared_ptr<LogSink> sink;
    {
        std::lock_guard<std::mutex> lock(g_sink_mutex);
        sink = g_sink;
    }
    if (sink)
        (*sink)(level, text);
    else
        to_stderr(level, text);
}

void LogQueue::push(LogLevel level, std::string text) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (records_.size() >= capacity_) {
            records_.pop_front();
            ++dropped_;
        }
        records_.push_back(Record{level, std::move(text)});
    }
    changed_.notify_all();
}

std::vector<LogQueue::Record> LogQueue::pop_all(std::chrono::duration<double> timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait_for(lock, timeout, [&] { return !records_.empty() || woken_; });
    woken_ = false;
    std::vector<Record> out;
    if (dropped_ > 0) {
        out.push_back(Record{LogLevel::Warning, std::to_string(dropped_) +
                                                    " log messages were dropped (too many)"});
        dropped_ = 0;
    }
    out.insert(out.end(), std::make_move_iterator(records_.begin()),
               std::make_move_iterator(records_.end()));
    records_.clear();
    return out;
}

void LogQueue::wake() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        woken_ = true;
    }
    changed_.notify_all();
}

}  // namespace ppmpi
