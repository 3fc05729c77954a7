// The one shared-memory segment of a process tree: an anonymous MAP_SHARED
// mapping made on first use (before any fork mpp does) and managed by
// Boost.Interprocess. Nothing is named, so nothing can leak into /dev/shm, even
// after SIGKILL; allocation runs under a robust lock, so a dying process cannot
// wedge it.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <boost/interprocess/mem_algo/rbtree_best_fit.hpp>
#include <boost/interprocess/sync/mutex_family.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>
#include <system_error>
#include <utility>

#include "mpp/detail/robust_mutex.hpp"

namespace mpp::detail {

class shared_segment {
    // Boost's own mutexes are not robust, so the allocator runs with a null mutex
    // and every call into it holds our robust_mutex instead. The allocator lives
    // inside the mapping (it keeps offsets only), so every process shares it.
    using memory_algorithm = boost::interprocess::rbtree_best_fit<boost::interprocess::null_mutex_family>;

    // Lives at the start of the mapping, visible to every process of the tree.
    struct header {
        robust_mutex allocation_lock;
    };

public:
    /// Virtual size reserved for the segment (pages are only backed once touched).
    /// MPP_SEGMENT_BYTES overrides the default of 1 GiB.
    static std::size_t reserved_bytes() {
        if (const char* text = std::getenv("MPP_SEGMENT_BYTES")) {
            const auto bytes = std::strtoull(text, nullptr, 10);
            if (bytes >= (1u << 20)) return static_cast<std::size_t>(bytes);
        }
        return std::size_t{1} << 30;
    }

    /// The segment of this process tree, created on first use. Call it before
    /// forking so the child shares it (Pool and Process do).
    static shared_segment& instance() {
        static shared_segment segment(reserved_bytes());
        return segment;
    }

    shared_segment(const shared_segment&) = delete;
    shared_segment& operator=(const shared_segment&) = delete;

    /// Memory from the shared segment; std::bad_alloc when it is exhausted.
    void* allocate(std::size_t bytes, std::size_t alignment = alignof(std::max_align_t)) {
        void* memory = nullptr;
        {
            robust_guard guard(header_->allocation_lock);
            memory = allocator_->allocate_aligned(bytes == 0 ? 1 : bytes, round_alignment(alignment));
        }
        if (memory == nullptr) throw std::bad_alloc();
        return memory;
    }

    void deallocate(void* memory) noexcept {
        if (memory == nullptr) return;
        robust_guard guard(header_->allocation_lock);
        allocator_->deallocate(memory);
    }

    /// Builds a T in shared memory. T must be usable from any process: no
    /// process-local pointers inside, only offsets or plain data.
    template <class T, class... Args>
    T* create(Args&&... args) {
        void* memory = allocate(sizeof(T), alignof(T));
        try {
            return ::new (memory) T(std::forward<Args>(args)...);
        } catch (...) {
            deallocate(memory);
            throw;
        }
    }

    template <class T>
    void destroy(T* object) noexcept {
        if (object == nullptr) return;
        object->~T();
        deallocate(object);
    }

    /// Bytes currently free for allocation (for leak checks in tests).
    std::size_t free_bytes() const {
        robust_guard guard(header_->allocation_lock);
        return allocator_->get_free_memory();
    }

    /// Offsets name shared objects in messages; they mean the same in every process of the tree.
    std::uint64_t offset_of(const void* object) const {
        if (!contains(object)) throw std::invalid_argument("mpp: object is not in the shared segment");
        return static_cast<std::uint64_t>(static_cast<const char*>(object) - base_);
    }
    void* at(std::uint64_t offset) const {
        if (offset >= size_) throw std::out_of_range("mpp: offset outside the shared segment");
        return base_ + offset;
    }
    bool contains(const void* object) const noexcept {
        const auto* byte = static_cast<const char*>(object);
        return byte >= base_ && byte < base_ + size_;
    }

private:
    static std::size_t round_alignment(std::size_t alignment) noexcept {
        std::size_t rounded = memory_algorithm::Alignment;
        while (rounded < alignment) rounded *= 2;
        return rounded;
    }

    explicit shared_segment(std::size_t bytes) : size_(bytes) {
        void* mapping = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (mapping == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mpp: mmap of the shared segment");
        base_ = static_cast<char*>(mapping);
        header_ = ::new (base_) header();
        constexpr std::size_t header_bytes = (sizeof(header) + 63) / 64 * 64;
        allocator_ = ::new (base_ + header_bytes) memory_algorithm(bytes - header_bytes, 0);
    }
    // Never unmapped: handles may outlive any static destructor order, and the
    // mapping goes away with the last process of the tree anyway.

    char* base_ = nullptr;
    std::size_t size_ = 0;
    header* header_ = nullptr;
    memory_algorithm* allocator_ = nullptr;
};

}  // namespace mpp::detail
