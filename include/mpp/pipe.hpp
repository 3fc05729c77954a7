// Pipe<T>() and Connection<T>: Python's multiprocessing.Pipe over two shared-memory
// message channels. recv() never hangs on a peer that is gone: once every process that
// used the other end closed it or died, and nothing is left to read, it throws EOFError.
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
#include "mpp/detail/pipe_ledger.hpp"
#include "mpp/detail/pipe_peers.hpp"
#include "mpp/detail/shared_handle_codec.hpp"
#include "mpp/detail/shared_ref.hpp"
#include "mpp/errors.hpp"
#include "mpp/serializer.hpp"

namespace mpp {

template <class T>
class Connection;

namespace detail {
/// What both ends of one pipe point at. End i reads channel[i] and writes channel[1 - i].
struct pipe_state {
    explicit pipe_state(bool is_duplex) : duplex(is_duplex) {}
    message_queue channel[2]{message_queue(0), message_queue(0)};  // slots are allocated on first send
    pipe_end_holders ends[2];
    const bool duplex;
};
inline constexpr std::uint32_t pipe_handle_kind = 0x5049'5045;  // "PIPE"
}  // namespace detail

/// Both ends of a new pipe. Duplex (the default): each end sends and receives. One-way:
/// `first` only receives and `second` only sends, as in Python; the wrong call throws
/// std::logic_error.
template <class T>
std::pair<Connection<T>, Connection<T>> Pipe(bool duplex = true);

/// One end of a Pipe. Copies are handles to the same end; they work in every process of
/// the tree (captured by a Process target, passed to a pool task, sent through a Queue).
///
/// - send(x) queues x for the other end (blocking only if 2^20 messages are unread). It
///   throws mpp::EOFError (Python: BrokenPipeError) when the other end is closed.
/// - recv() blocks for the next message; once nothing is left to read and the other end is
///   gone, it throws mpp::EOFError. Gone means closed, or every process that used it or got
///   it from another process (through fork or a message) has closed it or died; a parent
///   that merely kept a copy of the end it handed to a child does not count (Python would
///   hang there). A dead peer is noticed within about 50 ms, zombie or not.
/// - poll() is true when recv() would not block (a message, or EOF, is waiting).
/// - close() ends this handle (std::logic_error on any later use of it) and tells the
///   other end that this process is done with its end. Dropping a process's last handle
///   to an end does the same, as closing the last fd of a pipe would.
template <class T>
class Connection {
    static_assert(serializable<T>,
                  "mpp::Connection<T>: T must be encodable by mpp::binary_serializer (specialize mpp::codec<T> or add a "
                  "serialize member)");

public:
    /// A closed handle, to assign a real one to later.
    Connection() noexcept = default;
    Connection(const Connection& other)
        : state_(other.state_), side_(other.side_), closed_(other.closed()), user_pid_(other.user_pid()) {
        if (!closed()) detail::pipe_ledger::instance().acquire(own_end());
    }
    Connection(Connection&& other) noexcept
        : state_(std::move(other.state_)), side_(other.side_),
          closed_(other.closed_.exchange(true, std::memory_order_relaxed)), user_pid_(other.user_pid()) {}
    Connection& operator=(Connection other) noexcept {
        swap(other);
        return *this;
    }
    ~Connection() {
        if (!closed()) detail::pipe_ledger::instance().release(own_end());
    }

    void send(const T& item) const {
        check_usable("send", writable(), "this is the receive-only end of a one-way Pipe");
        enroll_as_user();
        auto& peer = state_->ends[1 - side_];
        if (peer.gone(false, detail::pipe_pid_cache::current()))
            throw EOFError("Connection::send: the other end of the pipe is closed");
        detail::pipe_peer_watch peer_gone(peer);
        const auto outcome = detail::with_encoded_message(item, [&](std::span<const std::byte> message) {
            return state_->channel[1 - side_].put(message, detail::steady_deadline::max(), peer_gone);
        });
        if (outcome != detail::wait_outcome::done)
            throw EOFError("Connection::send: the other end of the pipe was closed or its process died");
    }

    T recv() const {
        check_usable("recv", readable(), "this is the send-only end of a one-way Pipe");
        enroll_as_user();
        std::optional<T> item;
        detail::pipe_peer_watch peer_gone(state_->ends[1 - side_]);
        const auto outcome = state_->channel[side_].get(
            [&item](std::span<const std::byte> bytes) { item.emplace(detail::decode_message<T>(bytes)); },
            detail::steady_deadline::max(), peer_gone);
        if (outcome != detail::wait_outcome::done)
            throw EOFError("Connection::recv: nothing left to read and the other end of the pipe was closed or its "
                           "process died");
        return std::move(*item);
    }

    /// True when recv() would not block: a message is waiting, or the peer is gone (EOF).
    bool poll() const {
        check_usable("poll", readable(), "this is the send-only end of a one-way Pipe");
        enroll_as_user();
        return state_->channel[side_].size() != 0 ||
               state_->ends[1 - side_].gone(true, detail::pipe_pid_cache::current());
    }

    /// As poll(), waiting up to `timeout` for a message (or EOF) to arrive.
    template <class Rep, class Period>
    bool poll(std::chrono::duration<Rep, Period> timeout) const {
        check_usable("poll", readable(), "this is the send-only end of a one-way Pipe");
        enroll_as_user();
        detail::pipe_peer_watch peer_gone(state_->ends[1 - side_]);
        return state_->channel[side_].wait_nonempty(detail::deadline_after(timeout), peer_gone) !=
               detail::wait_outcome::timed_out;
    }

    /// Closes this handle. Idempotent.
    void close() const noexcept {
        if (closed_.exchange(true, std::memory_order_relaxed)) return;
        auto& end = own_end();
        detail::pipe_ledger::instance().release(end);
        end.note_closed(detail::pipe_pid_cache::current());
        // Wake a peer blocked in recv or send so it notices at once.
        state_->channel[0].wake_all();
        state_->channel[1].wake_all();
    }

    bool closed() const noexcept { return closed_.load(std::memory_order_relaxed); }
    bool readable() const noexcept { return state_ && (state_->duplex || side_ == 0); }
    bool writable() const noexcept { return state_ && (state_->duplex || side_ == 1); }

    void swap(Connection& other) noexcept {
        std::swap(state_, other.state_);
        std::swap(side_, other.side_);
        const bool was_closed = closed();
        closed_.store(other.closed(), std::memory_order_relaxed);
        other.closed_.store(was_closed, std::memory_order_relaxed);
        const pid_t was_user = user_pid();
        user_pid_.store(other.user_pid(), std::memory_order_relaxed);
        other.user_pid_.store(was_user, std::memory_order_relaxed);
    }

private:
    using state_ref = detail::shared_ref<detail::pipe_state>;
    friend std::pair<Connection<T>, Connection<T>> Pipe<T>(bool);
    friend struct codec<Connection<T>>;

    /// A new open handle held by this process, made by Pipe() or decoded from a message.
    Connection(state_ref state, unsigned side, bool inherited)
        : state_(std::move(state)), side_(side), closed_(false) {
        detail::pipe_ledger::instance().acquire(own_end());
        if (inherited) {
            own_end().note_inherited(detail::pipe_pid_cache::current());
        } else {
            own_end().note_creator(detail::pipe_pid_cache::current());
        }
    }

    detail::pipe_end_holders& own_end() const noexcept { return state_->ends[side_]; }

    void check_usable(const char* operation, bool allowed, const char* why_not) const {
        if (closed()) throw std::logic_error(std::string("Connection::") + operation + ": this connection is closed");
        if (!allowed) throw std::logic_error(std::string("Connection::") + operation + ": " + why_not);
    }

    /// Records this process as a user of its end (once per process, not per call).
    void enroll_as_user() const noexcept {
        const pid_t self = detail::pipe_pid_cache::current();
        if (user_pid() == self) return;
        own_end().note_user(self);
        user_pid_.store(self, std::memory_order_relaxed);
    }

    state_ref state_;
    unsigned side_ = 0;
    pid_t user_pid() const noexcept { return user_pid_.load(std::memory_order_relaxed); }

    // Atomics only so that threads may share one handle object (close from one, recv in another).
    mutable std::atomic<bool> closed_{true};
    mutable std::atomic<pid_t> user_pid_{0};  // the process known to be enrolled as a user of this end
};

template <class T>
std::pair<Connection<T>, Connection<T>> Pipe(bool duplex) {
    auto state = detail::shared_ref<detail::pipe_state>::make(duplex);
    return {Connection<T>(state, 0, false), Connection<T>(state, 1, false)};
}

// A Connection travels in messages (Process arguments, pool tasks, queues) as a reference
// to the same pipe end; the process that decodes it becomes one of the end's holders.
template <class T>
struct codec<Connection<T>> {
    static void save(writer& out, const Connection<T>& connection) {
        if (connection.closed()) throw SerializationError("mpp: cannot send a closed Connection");
        detail::save_shared_handle(out, detail::pipe_handle_kind, connection.state_);
        binary_serializer::save(out, static_cast<std::uint8_t>(connection.side_));
        connection.own_end().begin_transfer();
    }
    static Connection<T> load(reader& in) {
        auto state = detail::load_shared_handle<detail::pipe_state>(in, detail::pipe_handle_kind, "Connection");
        const auto side = binary_serializer::load<std::uint8_t>(in);
        if (side > 1) throw SerializationError("mpp: corrupt input: a Connection end must be 0 or 1");
        Connection<T> connection(std::move(state), side, true);
        connection.own_end().end_transfer();
        return connection;
    }
};

}  // namespace mpp
