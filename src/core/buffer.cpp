#include "ppmpi/core/buffer.hpp"

#include <malloc.h>
#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>
#include <cstring>
#include <deque>
#include <mutex>
#include <new>

namespace ppmpi {
namespace {

#ifdef MADV_POPULATE_WRITE
constexpr int kPopulateWrite = MADV_POPULATE_WRITE;
#else
constexpr int kPopulateWrite = 23; // Linux 5.14+; older kernels answer EINVAL
#endif

// Large received buffers come and go with every job. Fresh pages cost a fault each (measured:
// 16,385 faults and ~30 ms per 64 MiB here), and glibc hands such blocks to mmap/munmap when a
// thread other than main allocates them, whatever mallopt says. So blocks of kPooledMin bytes
// and more are mapped here and kept for reuse, up to kCachedMax bytes idle.
constexpr std::size_t kPooledMin = std::size_t{1} << 20;
constexpr std::size_t kCachedMax = std::size_t{512} << 20;

class BlockPool {
  public:
    struct Block {
        char* data;
        std::size_t capacity;
    };

    Block take(std::size_t size) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            // Best fit among blocks at most twice the size (a huge block stays for a huge need).
            auto best = idle_.end();
            for (auto it = idle_.begin(); it != idle_.end(); ++it)
                if (it->capacity >= size && it->capacity <= 2 * size &&
                    (best == idle_.end() || it->capacity < best->capacity))
                    best = it;
            if (best != idle_.end()) {
                Block block = *best;
                idle_bytes_ -= block.capacity;
                idle_.erase(best);
                return block;
            }
        }
        std::size_t capacity = (size + 4095) & ~std::size_t{4095};
        void* memory = ::mmap(nullptr, capacity, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (memory == MAP_FAILED) throw std::bad_alloc();
        return Block{static_cast<char*>(memory), capacity};
    }

    void give(Block block) {
        std::deque<Block> evicted;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            idle_.push_back(block);
            idle_bytes_ += block.capacity;
            while (idle_bytes_ > kCachedMax) {  // the oldest go first
                idle_bytes_ -= idle_.front().capacity;
                evicted.push_back(idle_.front());
                idle_.pop_front();
            }
        }
        for (const Block& b : evicted) ::munmap(b.data, b.capacity);
    }

  private:
    std::mutex mutex_;
    std::deque<Block> idle_;
    std::size_t idle_bytes_ = 0;
};

BlockPool& block_pool() {
    static auto* pool = new BlockPool();  // never destroyed: buffers may be freed at exit
    return *pool;
}

}  // namespace

Buffer Buffer::allocate(std::size_t size) {
    Buffer buffer;
    buffer.size = size;
    if (size >= kPooledMin) {
        BlockPool::Block block = block_pool().take(size);
        buffer.data = block.data;
        buffer.owner =
            std::shared_ptr<void>(block.data, [block](void*) { block_pool().give(block); });
        return buffer;
    }
    // new char[] default-initialises: the memory is not written before the transport fills it.
    std::shared_ptr<char[]> memory(new char[size > 0 ? size : 1]);
    buffer.data = memory.get();
    buffer.owner = std::move(memory);
    return buffer;
}

bool keeps_freed_memory() {
    const char* setting = std::getenv("PPMPI_KEEP_FREED_MEMORY");
    return !(setting && std::strcmp(setting, "0") == 0);
}

void keep_freed_memory_for_reuse() {
    if (!keeps_freed_memory()) return;
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
}

namespace {

struct Mapping {
    std::uintptr_t begin = 0, end = 0;
    bool anonymous_private_writable = false;
    std::size_t size_kib = 0, rss_kib = 0;
};

// Larger mappings are data (a user's arrays), not the allocators' memory, and are left alone.
constexpr std::size_t kPrefaultLargestKib = 64 * 1024;

// Anonymous private writable mappings that are at least half present, from /proc/self/smaps.
std::vector<Mapping> mostly_present_anonymous_mappings() {
    std::vector<Mapping> found;
    std::ifstream smaps("/proc/self/smaps");
    Mapping current;
    auto finish = [&] {
        if (current.anonymous_private_writable && current.rss_kib * 2 >= current.size_kib &&
            current.size_kib <= kPrefaultLargestKib)
            found.push_back(current);
    };
    for (std::string line; std::getline(smaps, line);) {
        std::istringstream in(line);
        std::string first, perms, offset, device, inode, path;
        in >> first;
        if (first == "Size:") {
            in >> current.size_kib;
        } else if (first == "Rss:") {
            in >> current.rss_kib;
        } else if (first.find('-') != std::string::npos && first.back() != ':') {
            finish();
            current = Mapping{};
            in >> perms >> offset >> device >> inode >> path;
            char dash = 0;
            std::istringstream range(first);
            range >> std::hex >> current.begin >> dash >> current.end;
            current.anonymous_private_writable =
                perms == "rw-p" && inode == "0" && (path.empty() || path == "[heap]");
        }
    }
    finish();
    return found;
}

}  // namespace

std::size_t prefault_written_memory() {
    if (!keeps_freed_memory()) return 0;
    std::size_t bytes = 0;
    for (const Mapping& m : mostly_present_anonymous_mappings()) {
        // Makes present pages writable again and faults in the missing ones; contents unchanged.
        if (::madvise(reinterpret_cast<void*>(m.begin), m.end - m.begin, kPopulateWrite) == 0)
            bytes += m.end - m.begin;
    }
    return bytes;
}

Buffer Buffer::copy_of(std::string_view bytes) {
    Buffer buffer = allocate(bytes.size());
    if (!bytes.empty()) std::memcpy(buffer.data, bytes.data(), bytes.size());
    return buffer;
}

}  // namespace ppmpi
