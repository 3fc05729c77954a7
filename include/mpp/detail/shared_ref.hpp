// A reference-counted handle to an object in the shared segment: what every
// public primitive (Queue, Value, Lock, ...) holds. Copies share the object in
// every process of the tree; the last handle to go frees it back to the segment.
#pragma once

#include <atomic>
#include <cstdint>
#include <utility>

#include "mpp/detail/segment.hpp"

namespace mpp::detail {

template <class T>
class shared_ref {
    struct block {
        template <class... Args>
        explicit block(Args&&... args) : object(std::forward<Args>(args)...) {}
        // Counts handles in all processes. Relaxed increments suffice (a new handle
        // is made from an existing one); the decrement that frees is acq_rel so
        // every write through other handles happens-before the destruction.
        std::atomic<std::uint32_t> references{1};
        T object;
    };
    static_assert(std::atomic<std::uint32_t>::is_always_lock_free);

public:
    /// Builds a new T in the shared segment (creating the segment if needed).
    template <class... Args>
    static shared_ref make(Args&&... args) {
        return shared_ref(shared_segment::instance().create<block>(std::forward<Args>(args)...));
    }

    shared_ref() noexcept = default;
    shared_ref(const shared_ref& other) noexcept : block_(other.block_) { retain(); }
    shared_ref(shared_ref&& other) noexcept : block_(std::exchange(other.block_, nullptr)) {}
    shared_ref& operator=(shared_ref other) noexcept {
        std::swap(block_, other.block_);
        return *this;
    }
    ~shared_ref() { release(); }

    T* get() const noexcept { return block_ ? &block_->object : nullptr; }
    T& operator*() const noexcept { return block_->object; }
    T* operator->() const noexcept { return &block_->object; }
    explicit operator bool() const noexcept { return block_ != nullptr; }
    friend bool operator==(const shared_ref& a, const shared_ref& b) noexcept { return a.block_ == b.block_; }

    /// For encoding a handle into a message: the offset names the object in every
    /// process of the tree, and the message holds one reference of its own, so the
    /// object outlives the sender's handles until the message is decoded (once).
    std::uint64_t export_reference() const {
        retain();
        return shared_segment::instance().offset_of(block_);
    }

    /// The handle for a decoded message: adopts the reference the message held.
    static shared_ref adopt_reference(std::uint64_t offset) {
        return shared_ref(static_cast<block*>(shared_segment::instance().at(offset)));
    }

    std::uint32_t use_count() const noexcept {
        return block_ ? block_->references.load(std::memory_order_relaxed) : 0;
    }

private:
    explicit shared_ref(block* adopted) noexcept : block_(adopted) {}

    void retain() const noexcept {
        if (block_) block_->references.fetch_add(1, std::memory_order_relaxed);
    }
    void release() noexcept {
        if (block_ && block_->references.fetch_sub(1, std::memory_order_acq_rel) == 1)
            shared_segment::instance().destroy(block_);
        block_ = nullptr;
    }

    block* block_ = nullptr;
};

}  // namespace mpp::detail
