#include "ppmpi/buffer.hpp"

#include <malloc.h>
#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <new>

namespace ppmpi {
namespace {

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

void keep_freed_memory_for_reuse() {
    const char* setting = std::getenv("PPMPI_KEEP_FREED_MEMORY");
    if (setting && std::strcmp(setting, "0") == 0) return;
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
}

Buffer Buffer::copy_of(std::string_view bytes) {
    Buffer buffer = allocate(bytes.size());
    if (!bytes.empty()) std::memcpy(buffer.data, bytes.data(), bytes.size());
    return buffer;
}

}  // namespace ppmpi
