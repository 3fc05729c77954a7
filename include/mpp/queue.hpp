// Queue<T>, JoinableQueue<T> and SimpleQueue<T>: Python's multiprocessing queues over the
// shared segment. Handles are cheap copies of one shared queue, valid in every process of
// the tree; a process killed inside put or get never blocks the others, and a message is
// delivered whole or not at all.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>

#include "mpp/detail/futex.hpp"
#include "mpp/detail/message_codec.hpp"
#include "mpp/detail/message_queue.hpp"
#include "mpp/detail/shared_handle_codec.hpp"
#include "mpp/detail/shared_ref.hpp"
#include "mpp/detail/task_counter.hpp"
#include "mpp/errors.hpp"
#include "mpp/serializer.hpp"

namespace mpp {

template <class T>
class Queue;
template <class T>
class JoinableQueue;
template <class T>
class SimpleQueue;

namespace detail {
/// What every queue handle points at.
struct queue_state {
    queue_state(std::size_t maxsize, std::size_t slot_bytes) : messages(maxsize, slot_bytes) {}
    message_queue messages;
    task_counter tasks;  // used by JoinableQueue only; 16 bytes are cheaper than a second type
};
inline constexpr std::uint32_t queue_handle_kind = 0x5155'4555;  // "QUEU"

/// The slot size of a Queue<T>: values that are their own bytes take the smallest slot they
/// fit (an int or a double: 16 bytes, four to a cache line); everything else the largest.
template <class T>
constexpr std::size_t queue_slot_bytes() {
    if constexpr (bitwise<T>()) {
        for (std::size_t bytes = message_queue::min_slot_bytes; bytes < message_queue::max_slot_bytes; bytes *= 2)
            if (sizeof(T) <= bytes - sizeof(std::uint64_t)) return bytes;
    }
    return message_queue::max_slot_bytes;
}
}  // namespace detail

/// A multi-producer multi-consumer FIFO between processes (and threads), bounded by
/// `maxsize` messages. Values travel through binary_serializer, so any serializable T
/// works and a message may be as large as the shared segment has room for.
///
/// Python's semantics, with C++ spellings: put/get block; put(x, timeout) returns false and
/// get(timeout) returns std::nullopt when the timeout expires; put_nowait/get_nowait throw
/// mpp::Full/mpp::Empty. close() closes this handle only: afterwards put and get through it
/// throw std::logic_error (Python's ValueError), while other handles, in this process or
/// others, keep working. A get() waiting for a producer that died still waits, as in
/// Python, unless it has a timeout.
template <class T>
class Queue {
    static_assert(serializable<T>,
                  "mpp::Queue<T>: T must be encodable by mpp::binary_serializer (specialize mpp::codec<T> or add a "
                  "serialize member)");

public:
    /// Bounded by the library default: 2^20 messages (see message_queue::default_maxsize).
    Queue() : Queue(0) {}
    /// maxsize 0 means the library default bound, 2^20 messages.
    explicit Queue(std::size_t maxsize) : state_(state_ref::make(maxsize, detail::queue_slot_bytes<T>())) {}

    // Copies share the queue. There are no move operations on purpose: "moving" copies, so
    // a moved-from handle still refers to its queue instead of crashing when used.
    Queue(const Queue& other) noexcept : state_(other.state_), closed_(other.is_closed()) {}
    Queue& operator=(const Queue& other) noexcept {
        state_ = other.state_;
        closed_.store(other.is_closed(), std::memory_order_relaxed);
        return *this;
    }
    ~Queue() = default;

    /// Blocks while the queue is full.
    void put(const T& item) const { (void)put_until(item, detail::steady_deadline::max(), "put"); }
    /// False if the queue stayed full for `timeout`.
    template <class Rep, class Period>
    bool put(const T& item, std::chrono::duration<Rep, Period> timeout) const {
        return put_until(item, detail::deadline_after(timeout), "put");
    }
    /// mpp::Full if the queue is full now.
    void put_nowait(const T& item) const {
        if (!put_until(item, detail::no_wait, "put_nowait")) throw Full("Queue::put_nowait: queue is full");
    }

    /// Blocks while the queue is empty.
    T get() const { return std::move(*get_until(detail::steady_deadline::max(), "get")); }
    /// std::nullopt if the queue stayed empty for `timeout`.
    template <class Rep, class Period>
    std::optional<T> get(std::chrono::duration<Rep, Period> timeout) const {
        return get_until(detail::deadline_after(timeout), "get");
    }
    /// mpp::Empty if the queue is empty now.
    T get_nowait() const {
        auto item = get_until(detail::no_wait, "get_nowait");
        if (!item) throw Empty("Queue::get_nowait: queue is empty");
        return std::move(*item);
    }

    /// Messages queued now; like Python's, a snapshot others may change at once.
    std::size_t qsize() const noexcept { return state_->messages.size(); }
    bool empty() const noexcept { return qsize() == 0; }
    bool full() const noexcept { return qsize() >= maxsize(); }
    /// The bound (the library default when constructed with 0).
    std::size_t maxsize() const noexcept { return state_->messages.maxsize(); }

    /// This handle will neither put nor get any more (std::logic_error if it tries).
    /// Idempotent; other handles to the same queue are unaffected.
    void close() const noexcept { closed_.store(true, std::memory_order_relaxed); }

    /// Python's feeder-thread controls. There is no feeder thread: put() has copied the
    /// message into shared memory before it returns, so both are no-ops.
    void join_thread() const noexcept {}
    void cancel_join_thread() const noexcept {}

    /// True when both handles refer to the same shared queue.
    friend bool operator==(const Queue& a, const Queue& b) noexcept { return a.state_ == b.state_; }

protected:
    using state_ref = detail::shared_ref<detail::queue_state>;
    explicit Queue(state_ref state) noexcept : state_(std::move(state)) {}
    detail::queue_state& state() const noexcept { return *state_; }
    bool is_closed() const noexcept { return closed_.load(std::memory_order_relaxed); }
    void check_open(const char* operation) const {
        if (is_closed()) throw std::logic_error(std::string("Queue::") + operation + ": this queue handle is closed");
    }

private:
    friend struct codec<Queue<T>>;
    friend struct codec<JoinableQueue<T>>;
    friend class SimpleQueue<T>;

    bool put_until(const T& item, detail::steady_deadline deadline, const char* operation) const {
        check_open(operation);
        return detail::with_encoded_message(item, [&](std::span<const std::byte> message) {
            return state_->messages.put(message, deadline) == detail::wait_outcome::done;
        });
    }

    std::optional<T> get_until(detail::steady_deadline deadline, const char* operation) const {
        check_open(operation);
        std::optional<T> item;
        state_->messages.get(
            [&item](std::span<const std::byte> bytes) { item.emplace(detail::decode_message<T>(bytes)); }, deadline);
        return item;
    }

    state_ref state_;
    // Atomic only so that one thread may close a handle another thread uses.
    mutable std::atomic<bool> closed_{false};
};

/// A Queue that also counts unfinished tasks in its shared state, like Python's: every put
/// adds one, task_done() removes one, join() waits for none to be left.
template <class T>
class JoinableQueue : public Queue<T> {
public:
    JoinableQueue() : Queue<T>(0) {}
    explicit JoinableQueue(std::size_t maxsize) : Queue<T>(maxsize) {}

    /// Marks one task fetched by get() as finished. More calls than items put throw
    /// std::logic_error (Python's ValueError).
    void task_done() const { this->state().tasks.task_done(this->state().messages); }
    /// Blocks until every item put so far has been matched by a task_done().
    void join() const { this->state().tasks.join(this->state().messages); }

private:
    friend struct codec<JoinableQueue<T>>;
    explicit JoinableQueue(typename Queue<T>::state_ref state) noexcept : Queue<T>(std::move(state)) {}
};

/// Python's SimpleQueue: put, get, empty (and close). Bounded by the library default
/// (2^20 messages) where Python's is unbounded.
template <class T>
class SimpleQueue {
public:
    SimpleQueue() = default;

    void put(const T& item) const { queue_.put(item); }
    T get() const { return queue_.get(); }
    bool empty() const noexcept { return queue_.empty(); }
    void close() const noexcept { queue_.close(); }

    friend bool operator==(const SimpleQueue& a, const SimpleQueue& b) noexcept { return a.queue_ == b.queue_; }

private:
    friend struct codec<SimpleQueue<T>>;
    explicit SimpleQueue(Queue<T> queue) noexcept : queue_(std::move(queue)) {}
    Queue<T> queue_;
};

// Handles travel in messages (Process arguments, pool tasks, other queues) as references
// to the same shared queue; a decoded handle starts open.
template <class T>
struct codec<Queue<T>> {
    static void save(writer& out, const Queue<T>& queue) {
        detail::save_shared_handle(out, detail::queue_handle_kind, queue.state_);
    }
    static Queue<T> load(reader& in) {
        return Queue<T>(detail::load_shared_handle<detail::queue_state>(in, detail::queue_handle_kind, "Queue"));
    }
};

template <class T>
struct codec<JoinableQueue<T>> {
    static void save(writer& out, const JoinableQueue<T>& queue) {
        detail::save_shared_handle(out, detail::queue_handle_kind, queue.state_);
    }
    static JoinableQueue<T> load(reader& in) {
        return JoinableQueue<T>(
            detail::load_shared_handle<detail::queue_state>(in, detail::queue_handle_kind, "JoinableQueue"));
    }
};

template <class T>
struct codec<SimpleQueue<T>> {
    static void save(writer& out, const SimpleQueue<T>& queue) { codec<Queue<T>>::save(out, queue.queue_); }
    static SimpleQueue<T> load(reader& in) { return SimpleQueue<T>(codec<Queue<T>>::load(in)); }
};

}  // namespace mpp
