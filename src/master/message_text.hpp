// src/master/message_text.hpp (private to the dispatcher): pieces of the messages users read.
#pragma once

#include "ppmpi/core/backoff.hpp"

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

namespace ppmpi {

inline std::string seconds_text(Clock::duration d) {
    char text[32];
    std::snprintf(text, sizeof(text), "%g s", std::chrono::duration<double>(d).count());
    return text;
}

inline std::string join(const std::vector<std::string>& parts) {
    std::string out;
    for (const std::string& part : parts)
        out += (out.empty() ? "" : ", ") + part;
    return out;
}

} // namespace ppmpi
