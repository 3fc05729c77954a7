// A single-producer single-consumer byte ring in shared memory. It carries a
// stream of bytes; messages are framed by the caller (message_stream.hpp), so a
// message larger than the ring simply streams through in pieces. No locks: a
// process dying on either side can never block the other inside the ring.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <span>
#include <stdexcept>

#include "mpp/detail/eventcount.hpp"

namespace mpp::detail {

inline constexpr std::size_t cache_line = 64;

class spsc_ring {
public:
    /// Bytes needed for a ring of `capacity` bytes (the data follows the header).
    static constexpr std::size_t footprint(std::size_t capacity) noexcept { return sizeof(spsc_ring) + capacity; }

    /// Placement-constructed at the start of footprint(capacity) bytes of shared
    /// memory. `readable_event` wakes the consumer, `writable_event` the producer;
    /// both may be shared with other rings (a pool thread sleeps on one doorbell).
    spsc_ring(std::size_t capacity, eventcount* readable_event, eventcount* writable_event)
        : capacity_(capacity), mask_(capacity - 1), readable_event_(readable_event), writable_event_(writable_event) {
        if (capacity < 64 || (capacity & (capacity - 1)) != 0)
            throw std::invalid_argument("mpp: ring capacity must be a power of two of at least 64 bytes");
    }
    spsc_ring(const spsc_ring&) = delete;
    spsc_ring& operator=(const spsc_ring&) = delete;

    std::size_t capacity() const noexcept { return capacity_; }

    /// Empties the ring for a new producer or consumer in place of a dead one.
    /// Only while nobody reads or writes it, but someone may still look at
    /// readable(): the positions are reset with atomic stores.
    void reset() noexcept {
        producer_.position.store(0, std::memory_order_relaxed);
        producer_.cached_read = 0;
        consumer_.position.store(0, std::memory_order_relaxed);
        consumer_.cached_write = 0;
        wants_data_.store(0, std::memory_order_relaxed);
        wants_space_.store(0, std::memory_order_relaxed);
        wants_drained_.store(0, std::memory_order_relaxed);
    }

    // ---- producer side ------------------------------------------------------

    /// Copies as much of `bytes` as fits now; returns how much was written. Call
    /// publish_written() after a batch of writes to wake a sleeping consumer.
    std::size_t try_write(std::span<const std::byte> bytes) noexcept {
        const std::uint64_t write = producer_.position.load(std::memory_order_relaxed);
        std::size_t space = capacity_ - static_cast<std::size_t>(write - producer_.cached_read);
        if (space < bytes.size()) {
            // acquire: the consumer has finished reading the bytes we may now overwrite.
            producer_.cached_read = consumer_.position.load(std::memory_order_acquire);
            space = capacity_ - static_cast<std::size_t>(write - producer_.cached_read);
        }
        const std::size_t count = std::min(space, bytes.size());
        if (count == 0) return 0;
        copy_in(write, bytes.first(count));
        // release: the bytes are in place before the consumer can see the new position.
        producer_.position.store(write + count, std::memory_order_release);
        return count;
    }

    std::size_t writable() const noexcept {
        return capacity_ - static_cast<std::size_t>(producer_.position.load(std::memory_order_relaxed) -
                                                    consumer_.position.load(std::memory_order_acquire));
    }

    /// Wakes the consumer if it asked to be woken for data (a fence and a load when not).
    void publish_written() noexcept { wake_if_wanted(wants_data_, *readable_event_); }

    /// Consumer: ask to be woken by the next publish_written (after taking the
    /// readable event's ticket, before re-checking readable(): see await()).
    void want_data() noexcept { wants_data_.store(1, std::memory_order_seq_cst); }

    /// Writes all of `bytes`, sleeping on the writable event while the ring is full.
    void write_all(std::span<const std::byte> bytes) {
        for (;;) {
            bytes = bytes.subspan(try_write(bytes));
            publish_written();
            if (bytes.empty()) return;
            await(*writable_event_, [&] { return writable() > 0; }, [&] { want_space(); });
        }
    }

    // ---- consumer side ------------------------------------------------------

    /// Copies up to `into.size()` available bytes; returns how many. Call
    /// publish_read() after a batch of reads to wake a sleeping producer.
    std::size_t try_read(std::span<std::byte> into) noexcept {
        const std::uint64_t read = consumer_.position.load(std::memory_order_relaxed);
        std::size_t available = static_cast<std::size_t>(consumer_.cached_write - read);
        if (available < into.size()) {
            // acquire: pairs with the producer's release, so the bytes are visible.
            consumer_.cached_write = producer_.position.load(std::memory_order_acquire);
            available = static_cast<std::size_t>(consumer_.cached_write - read);
        }
        const std::size_t count = std::min(available, into.size());
        if (count == 0) return 0;
        copy_out(read, into.first(count));
        // release: we are done reading these bytes before the producer may reuse them.
        consumer_.position.store(read + count, std::memory_order_release);
        return count;
    }

    std::size_t readable() const noexcept {
        return static_cast<std::size_t>(producer_.position.load(std::memory_order_acquire) -
                                        consumer_.position.load(std::memory_order_relaxed));
    }

    /// Reads exactly `into.size()` bytes, sleeping on the readable event while empty.
    /// Returns false only if the deadline passed first (bytes read so far are consumed).
    bool read_all(std::span<std::byte> into, steady_deadline deadline = steady_deadline::max(),
                  int spins = spin_budget) {
        for (;;) {
            const std::size_t got = try_read(into);
            into = into.subspan(got);
            if (got > 0) publish_read();
            if (into.empty()) return true;
            if (!await(*readable_event_, [&] { return readable() > 0; }, [&] { want_data(); }, deadline, spins)) return false;
        }
    }

    /// Wakes the producer if it asked to be woken for space.
    void publish_read() noexcept { wake_if_wanted(wants_space_, *writable_event_); }

    /// Consumer, after taking a whole message: wakes the producer if it asked to
    /// hear when the ring runs dry (so a pool can nap while a worker has work queued).
    void publish_drained() noexcept {
        if (readable() == 0) wake_if_wanted(wants_drained_, *writable_event_);  // else the request stands
    }

    /// Producer: ask to be woken by the publish_drained that finds the ring empty
    /// (after taking the event's ticket, then re-check drained() before sleeping).
    void want_drained() noexcept { wants_drained_.store(1, std::memory_order_seq_cst); }

    /// Producer: the consumer has read everything written so far.
    bool drained() const noexcept {
        return consumer_.position.load(std::memory_order_seq_cst) == producer_.position.load(std::memory_order_relaxed);
    }

    /// Producer: ask to be woken by the next publish_read.
    void want_space() noexcept { wants_space_.store(1, std::memory_order_seq_cst); }

private:
    std::byte* data() noexcept { return reinterpret_cast<std::byte*>(this + 1); }

    // A side takes its event's ticket, sets its wants_ flag (seq_cst) and then
    // re-checks the ring; the other side moves its position, fences, then reads the
    // flag: one of them sees the other (Dekker), so no wake is lost, and no wake is
    // sent that nobody wanted. A notifier that takes the flag moves the event past
    // the ticket, so even a notify for bytes already read cannot strand the sleeper.
    static void wake_if_wanted(std::atomic<std::uint32_t>& wanted, eventcount& event) noexcept {
        std::atomic_thread_fence(std::memory_order_seq_cst);
        if (wanted.load(std::memory_order_relaxed) != 0 && wanted.exchange(0, std::memory_order_seq_cst) != 0)
            event.notify();
    }

    void copy_in(std::uint64_t position, std::span<const std::byte> bytes) noexcept {
        const std::size_t start = static_cast<std::size_t>(position) & mask_;
        const std::size_t first = std::min(bytes.size(), capacity_ - start);
        std::memcpy(data() + start, bytes.data(), first);
        std::memcpy(data(), bytes.data() + first, bytes.size() - first);
    }
    void copy_out(std::uint64_t position, std::span<std::byte> into) noexcept {
        const std::size_t start = static_cast<std::size_t>(position) & mask_;
        const std::size_t first = std::min(into.size(), capacity_ - start);
        std::memcpy(into.data(), data() + start, first);
        std::memcpy(into.data() + first, data(), into.size() - first);
    }

    // Each side's position and its cached copy of the other side's position share
    // a cache line of their own, so the two sides never false-share.
    struct alignas(cache_line) producer_state {
        std::atomic<std::uint64_t> position{0};
        std::uint64_t cached_read = 0;
    };
    struct alignas(cache_line) consumer_state {
        std::atomic<std::uint64_t> position{0};
        std::uint64_t cached_write = 0;
    };

    producer_state producer_;
    consumer_state consumer_;
    alignas(cache_line) std::atomic<std::uint32_t> wants_data_{0};  // the consumer sleeps until data comes
    alignas(cache_line) std::atomic<std::uint32_t> wants_space_{0};  // the producer sleeps until space frees
    std::atomic<std::uint32_t> wants_drained_{0};  // the producer naps until the ring runs dry (same writer side)
    alignas(cache_line) std::size_t capacity_;
    std::size_t mask_;
    eventcount* readable_event_;
    eventcount* writable_event_;
};

static_assert(sizeof(spsc_ring) % cache_line == 0, "ring data must start on its own cache line");

}  // namespace mpp::detail
