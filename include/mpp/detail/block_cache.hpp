// Memory for the small objects a pool makes and drops by the thousand (the job
// behind each apply_async): a freed block waits here for the next object of its
// size instead of going back to malloc, which may hand the pages back to the
// kernel and fault them in again on the next burst. Keeps at most retained_limit
// bytes (about: two threads freeing at once may each take the last room); past
// that, and for blocks over largest_block, it is plain operator new.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <new>

namespace mpp::detail {

class block_cache {
public:
    /// Larger requests bypass the cache.
    static constexpr std::size_t largest_block = 1024;
    /// Bytes of freed blocks kept at most (20,000 queued apply_async jobs take about 12 MiB).
    static constexpr std::size_t retained_limit = std::size_t{32} << 20;

    block_cache() = default;
    block_cache(const block_cache&) = delete;
    block_cache& operator=(const block_cache&) = delete;
    ~block_cache() {
        for (size_class& sizes : classes_)
            while (free_block* block = sizes.head) {
                sizes.head = block->next;
                ::operator delete(block);
            }
    }

    void* allocate(std::size_t bytes) {
        if (bytes == 0 || bytes > largest_block) return ::operator new(bytes);
        size_class& sizes = classes_[class_of(bytes)];
        {
            std::lock_guard guard(sizes.mutex);
            if (free_block* block = sizes.head) {
                sizes.head = block->next;
                retained_.fetch_sub(block_bytes(bytes), std::memory_order_relaxed);
                return block;
            }
        }
        return ::operator new(block_bytes(bytes));
    }

    /// `bytes` as passed to allocate().
    void deallocate(void* memory, std::size_t bytes) noexcept {
        if (bytes == 0 || bytes > largest_block ||
            retained_.load(std::memory_order_relaxed) + block_bytes(bytes) > retained_limit)
            return ::operator delete(memory);
        retained_.fetch_add(block_bytes(bytes), std::memory_order_relaxed);
        size_class& sizes = classes_[class_of(bytes)];
        std::lock_guard guard(sizes.mutex);
        sizes.head = ::new (memory) free_block{sizes.head};
    }

    /// Bytes of freed blocks waiting for reuse.
    std::size_t retained_bytes() const noexcept { return retained_.load(std::memory_order_relaxed); }

private:
    static constexpr std::size_t granule = 64;
    static std::size_t class_of(std::size_t bytes) noexcept { return (bytes - 1) / granule; }
    static std::size_t block_bytes(std::size_t bytes) noexcept { return (class_of(bytes) + 1) * granule; }

    struct free_block {
        free_block* next;
    };
    struct size_class {
        std::mutex mutex;
        free_block* head = nullptr;
    };
    std::array<size_class, largest_block / granule> classes_;
    std::atomic<std::size_t> retained_{0};
};

/// An allocator drawing on a shared block_cache, for std::allocate_shared: each
/// object keeps the cache alive, so it may outlive the pool that made it.
template <class T>
class recycling_allocator {
    // The cache hands out operator new's default alignment; an over-aligned object
    // (a result type declared alignas(64), say) is allocated as usual instead.
    static constexpr bool cacheable = alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__;

public:
    using value_type = T;

    explicit recycling_allocator(std::shared_ptr<block_cache> cache) noexcept : cache_(std::move(cache)) {}
    template <class U>
    recycling_allocator(const recycling_allocator<U>& other) noexcept : cache_(other.cache_) {}

    T* allocate(std::size_t n) {
        if constexpr (!cacheable) return std::allocator<T>().allocate(n);
        return static_cast<T*>(cache_->allocate(n * sizeof(T)));
    }
    void deallocate(T* memory, std::size_t n) noexcept {
        if constexpr (!cacheable) return std::allocator<T>().deallocate(memory, n);
        cache_->deallocate(memory, n * sizeof(T));
    }

    template <class U>
    bool operator==(const recycling_allocator<U>& other) const noexcept {
        return cache_ == other.cache_;
    }

private:
    template <class U>
    friend class recycling_allocator;
    std::shared_ptr<block_cache> cache_;
};

}  // namespace mpp::detail
