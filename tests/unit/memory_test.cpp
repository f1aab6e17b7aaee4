// prefault_written_memory (buffer.hpp): after a fork, the pages this process had written take
// no page fault on their next write once it has run.
#include "ppmpi/core/buffer.hpp"

#include <catch2/catch.hpp>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

using namespace ppmpi;

namespace {

long minor_faults() {
    struct rusage usage {};
    ::getrusage(RUSAGE_SELF, &usage);
    return usage.ru_minflt;
}

// Faults taken while writing one byte into each of the region's pages.
long faults_writing(char* region, std::size_t bytes) {
    long before = minor_faults();
    for (std::size_t at = 0; at < bytes; at += 4096)
        region[at] = static_cast<char>(region[at] + 1);
    return minor_faults() - before;
}

void fork_and_reap() { // every private page of this process becomes copy-on-write
    pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) ::_exit(0);
    int status = 0;
    ::waitpid(child, &status, 0);
}

}  // namespace

TEST_CASE("prefault_written_memory: written pages take no fault after a fork once it has run",
          "[memory]") {
    constexpr std::size_t kBytes = std::size_t{4} << 20;
    void* mapped = ::mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                          -1, 0);
    REQUIRE(mapped != MAP_FAILED);
    auto* region = static_cast<char*>(mapped);
    std::memset(region, 1, kBytes); // present, as an allocator's memory in use is

    fork_and_reap();
    CHECK(faults_writing(region, kBytes) >= 1000); // 1,024 pages: each one faults (the bug)

    fork_and_reap();
    std::size_t covered = prefault_written_memory();
    if (covered == 0) {
        WARN("MADV_POPULATE_WRITE is not supported by this kernel: nothing to check");
        ::munmap(mapped, kBytes);
        return;
    }
    CHECK(covered >= kBytes);
    CHECK(faults_writing(region, kBytes) < 50);
    ::munmap(mapped, kBytes);
}
