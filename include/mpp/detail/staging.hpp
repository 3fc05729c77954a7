// Shared memory for large pool messages, mapped once before the workers are
// forked and kept: a large apply argument is encoded straight into it by the
// caller and a large result by the worker, and the other side decodes it in
// place. Each side copies the bytes once; nothing streams through the rings and
// no fresh buffer is faulted in per message.
#pragma once

#include <sys/mman.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>

#include "mpp/detail/bulk_memory.hpp"

namespace mpp::detail {

/// Messages smaller than this take the rings: staging saves nothing there.
inline constexpr std::size_t staging_threshold = std::size_t{256} << 10;
/// Default sizes (PoolOptions), virtual: pages are backed only once touched, then kept for reuse.
inline constexpr std::size_t default_result_staging_bytes = std::size_t{128} << 20;  // per worker
inline constexpr std::size_t default_task_staging_bytes = std::size_t{256} << 20;    // all callers together

class staging_memory : public std::enable_shared_from_this<staging_memory> {
public:
    /// A block of the task area, freed when the last copy of the lease goes.
    class lease {
    public:
        lease(std::shared_ptr<staging_memory> owner, std::span<std::byte> bytes) noexcept
            : owner_(std::move(owner)), bytes_(bytes) {}
        ~lease() { owner_->release(bytes_); }
        lease(const lease&) = delete;
        lease& operator=(const lease&) = delete;
        std::span<std::byte> bytes() const noexcept { return bytes_; }

    private:
        std::shared_ptr<staging_memory> owner_;
        std::span<std::byte> bytes_;
    };

    /// Reserves the address space: `result_bytes` for each worker's results, then
    /// `task_bytes` for the callers' arguments, each rounded up to whole pages.
    /// Without it (mmap refused, e.g. strict overcommit) every message takes the
    /// rings. std::invalid_argument when the sizes add up past the address space.
    staging_memory(std::size_t workers, std::size_t task_bytes, std::size_t result_bytes)
        : workers_(workers), task_bytes_(whole_pages(task_bytes)), result_bytes_(whole_pages(result_bytes)) {
        if (task_bytes_ < task_bytes || result_bytes_ < result_bytes ||
            __builtin_mul_overflow(workers, result_bytes_, &bytes_) ||
            __builtin_add_overflow(bytes_, task_bytes_, &bytes_) || bytes_ > max_bytes)
            throw std::invalid_argument("mpp: the staging areas (PoolOptions::task_staging_bytes, and "
                                        "result_staging_bytes for each of " + std::to_string(workers) +
                                        " workers) add up to more than the address space holds");
        void* mapping =
            ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (mapping == MAP_FAILED) {
            bytes_ = 0;
            return;
        }
        base_ = static_cast<std::byte*>(mapping);
    }
    ~staging_memory() {
        if (base_ != nullptr) ::munmap(base_, bytes_);
    }
    staging_memory(const staging_memory&) = delete;
    staging_memory& operator=(const staging_memory&) = delete;

    /// Worker i's result area (empty if there is no staging memory).
    std::span<std::byte> result_area(std::size_t i) const noexcept {
        if (base_ == nullptr) return {};
        return {base_ + i * result_bytes_, result_bytes_};
    }

    /// A block of `size` bytes of the task area, or null when it is full.
    std::shared_ptr<lease> allocate(std::size_t size) {
        if (base_ == nullptr || size > task_bytes_) return nullptr;
        size = (size + 63) & ~std::size_t{63};
        std::size_t offset = 0;
        std::size_t fresh_from = 0;
        {
            std::lock_guard guard(mutex_);
            // First fit from the start: the lowest blocks are the ones already faulted in.
            for (const auto& [start, length] : used_) {
                if (start - offset >= size) break;
                offset = start + length;
            }
            if (task_bytes_ - offset < size) return nullptr;
            used_.emplace(offset, size);
            fresh_from = std::max(offset, populated_);
            populated_ = std::max(populated_, offset + size);
        }
        auto block = std::make_shared<lease>(shared_from_this(), std::span(task_area() + offset, size));
        // Pages never used before are faulted in at once (twice as fast as one by one);
        // used ones stay, so this happens once per high-water mark.
        if (fresh_from < offset + size) prefault_for_overwrite(task_area() + fresh_from, offset + size - fresh_from);
        return block;
    }

    /// True when `bytes` lie in the task area (so a worker can read them where they are).
    bool holds(std::span<const std::byte> bytes) const noexcept {
        if (base_ == nullptr || bytes.empty()) return false;
        const std::byte* area = task_area();
        return std::less_equal<>()(area, bytes.data()) &&
               std::less_equal<>()(bytes.data() + bytes.size(), area + task_bytes_);
    }

private:
    static constexpr std::size_t max_bytes = std::size_t{1} << 46;  // 64 TiB: past every x86-64 user space
    static constexpr std::size_t whole_pages(std::size_t n) noexcept { return (n + page_bytes - 1) & ~(page_bytes - 1); }

    std::byte* task_area() const noexcept { return base_ + workers_ * result_bytes_; }

    void release(std::span<std::byte> bytes) noexcept {
        std::lock_guard guard(mutex_);
        used_.erase(static_cast<std::size_t>(bytes.data() - task_area()));
    }

    std::size_t workers_;
    std::size_t task_bytes_;
    std::size_t result_bytes_;
    std::size_t bytes_ = 0;
    std::byte* base_ = nullptr;
    std::mutex mutex_;
    std::map<std::size_t, std::size_t> used_;  // task area blocks in use: offset -> size
    std::size_t populated_ = 0;                // task area bytes below this were faulted in before
};

}  // namespace mpp::detail
