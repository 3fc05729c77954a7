// A bounded multi-producer multi-consumer queue of byte messages in the shared segment,
// the engine under Queue and Pipe. A message is published (and taken) by one store under
// a robust mutex (one for putters, one for getters), so a process killed at any instant
// inside put or get never blocks the others and never half-delivers.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "mpp/detail/futex.hpp"
#include "mpp/detail/message_signal.hpp"
#include "mpp/detail/robust_mutex.hpp"
#include "mpp/detail/segment.hpp"

namespace mpp::detail {

enum class wait_outcome {
    done,       // the message was put or taken
    timed_out,  // the deadline passed first
    stopped,    // the caller's Stop policy said to give up (e.g. the peer of a pipe is gone)
};

/// The Stop policy of a wait that ends only with its condition or its deadline.
struct never_stop {
    bool operator()() const noexcept { return false; }
};

/// A Stop policy that must be asked again every so often while nothing happens
/// (e.g. to notice a dead peer, which sends no wake-up).
template <class Stop>
concept polling_stop = requires(const Stop& stop) {
    { stop.poll_interval() } -> std::convertible_to<std::chrono::steady_clock::duration>;
};

/// For put_nowait/get_nowait: fail at once instead of waiting at all.
inline constexpr steady_deadline no_wait = steady_deadline::min();

class message_queue {
public:
    /// The bound of Queue() and Queue(0): 2^20 messages. Slots are allocated on demand
    /// (doubling), so a queue costs memory for what it holds, not for its bound.
    static constexpr std::size_t default_maxsize = std::size_t{1} << 20;
    /// A slot is 8 header bytes and the payload of a short message; payloads up to this size
    /// travel inside their slot (in the largest slots), longer ones in a block of their own.
    static constexpr std::size_t inline_bytes = 56;
    /// Slot sizes a queue may use: 16 bytes suits messages of up to 8 (an int, a double),
    /// four to a cache line; 64, the default, carries short strings inline.
    static constexpr std::size_t min_slot_bytes = 16;
    static constexpr std::size_t max_slot_bytes = 64;

    /// `slot_bytes`: a power of two from min_slot_bytes to max_slot_bytes. It only decides
    /// which messages travel inline, so any message works in any queue.
    explicit message_queue(std::size_t maxsize, std::size_t slot_bytes = max_slot_bytes)
        : maxsize_(maxsize == 0 ? default_maxsize : maxsize),
          slot_shift_(static_cast<unsigned>(
              std::countr_zero(std::bit_ceil(std::clamp(slot_bytes, min_slot_bytes, max_slot_bytes))))) {}
    ~message_queue() {
        // The last handle is gone, so nobody else touches the queue any more.
        auto& segment = shared_segment::instance();
        const table current = load_table();
        const std::uint64_t tail = tail_.load(std::memory_order_relaxed);
        for (std::uint64_t i = head_.load(std::memory_order_relaxed); i != tail; ++i) {
            const slot message = current.at(i);
            if (message.in_block()) segment.deallocate(segment.at(message.block_offset()));
        }
        segment.deallocate(current.slots);
    }
    message_queue(const message_queue&) = delete;
    message_queue& operator=(const message_queue&) = delete;

    std::size_t maxsize() const noexcept { return maxsize_; }

    /// Messages queued now (a snapshot: others may change it at once).
    std::size_t size() const noexcept {
        // head first: tail only grows, so the difference can never go negative.
        const std::uint64_t head = head_.load(std::memory_order_acquire);
        const std::uint64_t tail = tail_.load(std::memory_order_acquire);
        return static_cast<std::size_t>(tail - head);
    }

    /// Messages ever published; JoinableQueue counts unfinished tasks against it.
    std::uint64_t published() const noexcept { return tail_.load(std::memory_order_acquire); }

    /// The longest payload that travels inside a slot of this queue.
    std::size_t inline_capacity() const noexcept { return (std::size_t{1} << slot_shift_) - slot::header_bytes; }

    /// Copies `message` in, waiting while the queue is full. Long payloads are copied into
    /// their own segment block before the lock is taken, so the lock is held only to publish.
    template <class Stop = never_stop>
    wait_outcome put(std::span<const std::byte> message, steady_deadline deadline, Stop&& stop = {}) {
        auto& segment = shared_segment::instance();
        if (message.size() >= max_message_bytes)
            throw std::length_error("mpp: a message of " + std::to_string(message.size()) + " bytes is too large");
        payload_block block;
        if (message.size() > inline_capacity()) {
            block.memory = segment.allocate(message.size());
            std::memcpy(block.memory, message.data(), message.size());
        }
        for (;;) {
            std::uint32_t seen = 0;
            bool published = false;
            {
                robust_guard guard(putters_.lock);  // a holder that died left the queue consistent: carry on
                const std::uint64_t tail = tail_.load(std::memory_order_relaxed);
                // head only grows, so a stale copy can only understate the room: refresh it
                // (a line the getters write) only when it says "full".
                if (tail - putters_.head_seen >= maxsize_) {
                    putters_.head_seen = head_.load(std::memory_order_acquire);
                    if (tail - putters_.head_seen >= maxsize_) {
                        seen = not_full_.observe();  // before the last look: see message_signal
                        putters_.head_seen = head_.load(std::memory_order_acquire);
                    }
                }
                if (tail - putters_.head_seen < maxsize_) {
                    slot free_slot = room_for(putters_.head_seen, tail);
                    if (block.memory != nullptr) {
                        free_slot.set_block(message.size(), segment.offset_of(block.memory));
                    } else {
                        free_slot.set_inline(message);
                    }
                    // The one store that publishes: dying before it drops the message whole.
                    tail_.store(tail + 1, std::memory_order_release);
                    // Only a hint for getters, so it follows the publishing store: dying in
                    // between leaves the message published and untagged (getters read tail_).
                    free_slot.store_header(free_slot.load_header(std::memory_order_relaxed) | slot::tag_of(tail),
                                           std::memory_order_release);
                    published = true;
                }
            }
            if (published) {
                block.memory = nullptr;  // the queue owns it now
                not_empty_.notify_sleepers_after_unlock();  // putters_.lock was released just above
                return wait_outcome::done;
            }
            const auto has_room = [this] { return size() < maxsize_; };
            const auto outcome = wait_step(not_full_, seen, has_room, deadline, stop);
            if (outcome != wait_outcome::done) return outcome;
        }
    }

    /// Takes the oldest message and calls consume(std::span<const std::byte>) with it after
    /// the lock is released (so a slow decoder blocks nobody). The message is gone once taken,
    /// also if consume throws. With a Stop policy, a final attempt follows the stop, so
    /// everything sent before a peer closed is still delivered.
    template <class Consume, class Stop = never_stop>
    wait_outcome get(Consume&& consume, steady_deadline deadline, Stop&& stop = {}) {
        for (;;) {
            std::uint32_t seen = 0;
            taken_message message;
            if (try_take(message, seen)) {
                deliver(message, consume);
                return wait_outcome::done;
            }
            const auto has_message = [this] { return size() != 0; };
            const auto outcome = wait_step(not_empty_, seen, has_message, deadline, stop);
            if (outcome == wait_outcome::stopped && try_take(message, seen)) {
                deliver(message, consume);
                return wait_outcome::done;
            }
            if (outcome != wait_outcome::done) return outcome;
        }
    }

    /// Waits until a message is queued, without taking it.
    template <class Stop = never_stop>
    wait_outcome wait_nonempty(steady_deadline deadline, Stop&& stop = {}) {
        for (;;) {
            const std::uint32_t seen = not_empty_.observe();
            if (size() != 0) return wait_outcome::done;
            const auto has_message = [this] { return size() != 0; };
            const auto outcome = wait_step(not_empty_, seen, has_message, deadline, stop);
            if (outcome == wait_outcome::stopped && size() != 0) return wait_outcome::done;
            if (outcome != wait_outcome::done) return outcome;
        }
    }

    /// Wakes every waiter so it re-checks its Stop policy (a pipe end was closed).
    void wake_all() noexcept {
        not_empty_.notify();
        not_full_.notify();
    }

private:
    /// A view of one slot: a header (tag << 40 | size << 1 | in_block), then the payload or
    /// its block's offset. The tag, stored after tail_ has published the message, names the
    /// position the slot holds, so a getter that reads the slot anyway learns from the same
    /// cache line that it is published, instead of reading tail_, the line putters write.
    /// The header is read and written atomically: a getter may probe the tag of the slot a
    /// putter is filling.
    class slot {
    public:
        static constexpr unsigned tag_shift = 40;
        static constexpr std::uint64_t size_mask = (std::uint64_t{1} << tag_shift) - 1;
        static constexpr std::size_t header_bytes = sizeof(std::uint64_t);
        /// Never 0 (a fresh array is zeroed), and different for two positions one lap apart
        /// while the capacity stays below tagged_capacity_limit.
        static constexpr std::uint64_t tag_of(std::uint64_t position) noexcept {
            return ((position & 0x7F'FFFF) | 0x80'0000) << tag_shift;
        }

        explicit slot(std::byte* bytes) noexcept : bytes_(bytes) {}
        std::byte* bytes() const noexcept { return bytes_; }
        std::byte* payload() const noexcept { return bytes_ + header_bytes; }

        std::uint64_t load_header(std::memory_order order) const noexcept { return header().load(order); }
        void store_header(std::uint64_t value, std::memory_order order) const noexcept { header().store(value, order); }
        bool in_block() const noexcept { return (load_header(std::memory_order_relaxed) & 1u) != 0; }
        std::size_t size() const noexcept {
            return static_cast<std::size_t>((load_header(std::memory_order_relaxed) & size_mask) >> 1);
        }
        std::uint64_t block_offset() const noexcept {
            std::uint64_t offset;
            std::memcpy(&offset, payload(), sizeof offset);
            return offset;
        }
        void set_inline(std::span<const std::byte> message) const noexcept {
            store_header(static_cast<std::uint64_t>(message.size()) << 1, std::memory_order_relaxed);
            if (!message.empty()) std::memcpy(payload(), message.data(), message.size());
        }
        void set_block(std::size_t size, std::uint64_t offset) const noexcept {
            store_header(static_cast<std::uint64_t>(size) << 1 | 1u, std::memory_order_relaxed);
            std::memcpy(payload(), &offset, sizeof offset);
        }

    private:
        std::atomic_ref<std::uint64_t> header() const noexcept {
            // Slot arrays are max_slot_bytes-aligned and slots a power of two of at least 16
            // bytes, so every header is an aligned 8-byte word.
            return std::atomic_ref<std::uint64_t>(*std::launder(reinterpret_cast<std::uint64_t*>(bytes_)));
        }
        std::byte* bytes_;
    };
    /// From this capacity on, a slot's tag could repeat one lap later: getters then read tail_.
    static constexpr std::uint64_t tagged_capacity_limit = std::uint64_t{1} << 23;
    /// Message sizes must leave the header's top bits to the tag (512 GiB: beyond any segment).
    static constexpr std::size_t max_message_bytes = std::size_t{1} << (slot::tag_shift - 1);

    /// The slot array and its power-of-two capacity, packed into one word so that growing
    /// the array is published by a single store too.
    struct table {
        std::byte* slots = nullptr;
        std::uint64_t capacity = 0;
        unsigned slot_shift = 0;
        slot at(std::uint64_t position) const noexcept {
            return slot(slots + ((position & (capacity - 1)) << slot_shift));
        }
    };
    static constexpr std::uint64_t initial_capacity = 16;
    static constexpr unsigned capacity_bits = 6;  // log2(capacity) in the low bits of table_

    table load_table() const noexcept {
        const std::uint64_t packed = table_.load(std::memory_order_relaxed);
        if (packed == 0) return {};
        auto& segment = shared_segment::instance();
        return {static_cast<std::byte*>(segment.at(packed >> capacity_bits)),
                std::uint64_t{1} << (packed & ((1u << capacity_bits) - 1)), slot_shift_};
    }

    /// The slot for position `tail`, growing the array when it is full (under putters_.lock).
    /// `head` may be stale: growing re-reads it with the getters locked out.
    slot room_for(std::uint64_t head, std::uint64_t tail) {
        table current = load_table();
        if (tail - head < current.capacity) return current.at(tail);
        // Getters read the array under getters_.lock, so the array moves with both locks held
        // (the putters' first: a getter never takes it, so this cannot deadlock).
        robust_guard getters_out(getters_.lock);
        head = head_.load(std::memory_order_relaxed);
        putters_.head_seen = head;
        if (tail - head < current.capacity) return current.at(tail);
        auto& segment = shared_segment::instance();
        const std::uint64_t capacity = current.capacity == 0 ? initial_capacity : current.capacity * 2;
        const std::size_t bytes = static_cast<std::size_t>(capacity) << slot_shift_;
        table grown{static_cast<std::byte*>(segment.allocate(bytes, max_slot_bytes)), capacity, slot_shift_};
        // Zeroed, so that no leftover of recycled memory carries the tag of a future position.
        std::memset(grown.slots, 0, bytes);
        for (std::uint64_t i = head; i != tail; ++i)
            std::memcpy(grown.at(i).bytes(), current.at(i).bytes(), std::size_t{1} << slot_shift_);
        // Positions keep their meaning; only the array moves. Dying before this store leaks
        // the new array, after it the old one: the queue itself is never torn.
        table_.store(segment.offset_of(grown.slots) << capacity_bits |
                         static_cast<std::uint64_t>(std::countr_zero(capacity)),
                     std::memory_order_relaxed);
        segment.deallocate(current.slots);
        return grown.at(tail);
    }

    struct taken_message {
        std::uint64_t header = 0;
        std::byte payload[inline_bytes];
    };

    bool try_take(taken_message& message, std::uint32_t& seen) {
        robust_guard guard(getters_.lock);
        const std::uint64_t head = head_.load(std::memory_order_relaxed);
        const table current = load_table();
        // Published if below a (possibly stale, never too new) copy of tail_, or if the slot
        // carries head's tag; only then read tail_, the line putters write on every put.
        if (head >= getters_.tail_seen &&
            !(current.capacity != 0 && current.capacity < tagged_capacity_limit &&
              (current.at(head).load_header(std::memory_order_acquire) & ~slot::size_mask) == slot::tag_of(head))) {
            getters_.tail_seen = tail_.load(std::memory_order_acquire);
            if (head >= getters_.tail_seen) {
                seen = not_empty_.observe();  // before the last look: see message_signal
                getters_.tail_seen = tail_.load(std::memory_order_acquire);
                if (head >= getters_.tail_seen) return false;
            }
        }
        const slot oldest = current.at(head);
        message.header = oldest.load_header(std::memory_order_relaxed) & slot::size_mask;
        std::memcpy(message.payload, oldest.payload(), oldest.in_block() ? sizeof(std::uint64_t) : oldest.size());
        // The one store that takes it: dying before it leaves the message queued.
        head_.store(head + 1, std::memory_order_release);
        return true;
    }

    template <class Consume>
    void deliver(const taken_message& message, Consume& consume) {
        not_full_.notify_sleepers_after_unlock();  // getters_.lock was released in try_take
        const std::size_t size = static_cast<std::size_t>(message.header >> 1);
        if ((message.header & 1u) == 0) {
            consume(std::span<const std::byte>(message.payload, size));
            return;
        }
        std::uint64_t offset;
        std::memcpy(&offset, message.payload, sizeof offset);
        payload_block block{shared_segment::instance().at(offset)};
        consume(std::span<const std::byte>(static_cast<const std::byte*>(block.memory), size));
    }

    template <class Ready, class Stop>
    static wait_outcome wait_step(message_signal& signal, std::uint32_t seen, const Ready& ready,
                                  steady_deadline deadline, Stop& stop) {
        if (deadline == no_wait) return wait_outcome::timed_out;
        if (stop()) return wait_outcome::stopped;
        steady_deadline until = deadline;
        if (deadline != steady_deadline::max()) {
            const auto now = std::chrono::steady_clock::now();
            if (now >= deadline) return wait_outcome::timed_out;
            if constexpr (polling_stop<std::remove_cvref_t<Stop>>) until = std::min(deadline, now + stop.poll_interval());
        } else if constexpr (polling_stop<std::remove_cvref_t<Stop>>) {
            until = std::chrono::steady_clock::now() + stop.poll_interval();
        }
        if (signal.wait(seen, ready, until) || until != deadline) return wait_outcome::done;  // re-check everything
        return wait_outcome::timed_out;
    }

    /// Owns a payload block until the queue (put) or nobody (get) needs it.
    struct payload_block {
        void* memory = nullptr;
        payload_block() = default;
        explicit payload_block(void* owned) noexcept : memory(owned) {}
        payload_block(const payload_block&) = delete;
        payload_block& operator=(const payload_block&) = delete;
        ~payload_block() { shared_segment::instance().deallocate(memory); }
    };

    // Putters and getters each have their own lock, so one producer and one consumer never
    // contend for a lock, and each side's bookkeeping stays on a cache line of its own: the
    // lines that cross between them are tail_, head_ and the slots (ownership: a slot at or
    // past tail_ is the putters', one before it the getters'). head_/tail_ are atomics so
    // size() may read them without a lock.
    struct alignas(64) putter_side {
        robust_mutex lock;
        std::uint64_t head_seen = 0;  // a copy of head_, at most as new as it
    };
    struct alignas(64) getter_side {
        robust_mutex lock;
        std::uint64_t tail_seen = 0;  // a copy of tail_, at most as new as it
    };
    putter_side putters_;
    alignas(64) std::atomic<std::uint64_t> tail_{0};  // written under putters_.lock only
    getter_side getters_;
    alignas(64) std::atomic<std::uint64_t> head_{0};  // written under getters_.lock only
    // Changed only with both locks held, so either one suffices to read it.
    alignas(64) std::atomic<std::uint64_t> table_{0};  // offset << capacity_bits | log2(capacity); 0 = no array yet
    std::size_t maxsize_;
    unsigned slot_shift_;  // log2 of the slot size
    // Each signal on its own line: waiters spin on them without bouncing the locks' lines.
    alignas(64) message_signal not_empty_;
    alignas(64) message_signal not_full_;
};

}  // namespace mpp::detail
