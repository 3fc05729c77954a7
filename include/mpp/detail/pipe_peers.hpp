// Who holds each end of a pipe, so that recv can tell "nothing yet" from "nothing ever
// again": per end, a small lock-free table of the processes that made it, inherited it,
// used it or closed it, and a liveness test that sees through zombies. A process that
// dies holding an end needs no cleanup: it is simply found dead.
#pragma once

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>

namespace mpp::detail {

/// getpid() without a syscall per call: cached, and refreshed in every forked child.
class pipe_pid_cache {
public:
    static pid_t current() noexcept { return instance().pid_.load(std::memory_order_relaxed); }

private:
    pipe_pid_cache() { ::pthread_atfork(nullptr, nullptr, &refresh); }
    static pipe_pid_cache& instance() noexcept {
        static pipe_pid_cache cache;
        return cache;
    }
    static void refresh() noexcept { instance().pid_.store(::getpid(), std::memory_order_relaxed); }
    std::atomic<pid_t> pid_{::getpid()};
};

/// False once `pid` has exited, also while it is an unreaped zombie (the usual state of a
/// child that died while its parent blocks in recv). Async-signal-safe, for fork handlers.
inline bool pipe_process_alive(pid_t pid) noexcept {
    if (pid <= 0) return false;
    if (pid == pipe_pid_cache::current()) return true;
    if (::kill(pid, 0) == -1 && errno == ESRCH) return false;
    char path[40];
    std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
    const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno != ENOENT;  // no /proc at all: trust kill()
    char text[512];
    const ssize_t length = ::read(fd, text, sizeof text - 1);
    ::close(fd);
    if (length <= 0) return false;  // the process went away between open and read
    text[length] = '\0';
    // "pid (comm) S ...": comm may hold spaces and parentheses, so look after the last ')'.
    const char* name_end = std::strrchr(text, ')');
    if (name_end == nullptr || name_end[1] == '\0' || name_end[2] == '\0') return true;
    return name_end[2] != 'Z' && name_end[2] != 'X';
}

/// The processes that hold one end of a pipe. An entry is pid | used | closed in one word,
/// claimed and updated by CAS, so a process dying halfway leaves a valid table.
class pipe_end_holders {
public:
    static constexpr std::size_t capacity = 32;

    /// `pid` made this end (Pipe()).
    void note_creator(pid_t pid) noexcept { note(pid, 0); }
    /// `pid` got a handle to this end from another process: through fork, or decoded from a message.
    void note_inherited(pid_t pid) noexcept { note(pid, inherited_bit); }
    /// `pid` sent, received or polled through this end.
    void note_user(pid_t pid) noexcept { note(pid, used_bit); }
    /// `pid` closed this end (or dropped its last handle to it).
    void note_closed(pid_t pid) noexcept {
        for (auto& entry : entries_) {
            std::uint64_t value = entry.load(std::memory_order_relaxed);
            while (pid_of(value) == pid && (value & closed_bit) == 0 &&
                   !entry.compare_exchange_weak(value, value | closed_bit, std::memory_order_seq_cst)) {
            }
        }
    }

    /// A process holding this end is forking: until the child has enrolled itself (its fork
    /// handler runs on its own schedule, maybe after the parent closed its copy) the end is
    /// not gone. A child killed before it enrolls delays "gone" by fork_grace at most.
    void fork_starting() noexcept {
        pending_forks_.fetch_add(1, std::memory_order_seq_cst);
        const auto until = std::chrono::steady_clock::now() + fork_grace;  // CLOCK_MONOTONIC: system-wide
        fork_grace_until_.store(until.time_since_epoch().count(), std::memory_order_seq_cst);
    }
    /// In the child, from its fork handler.
    void fork_finished_in_child(pid_t child) noexcept {
        note_inherited(child);
        decrement(pending_forks_);
    }

    /// A handle to this end is inside a message not yet decoded: the end is not gone meanwhile.
    void begin_transfer() noexcept { in_transit_.fetch_add(1, std::memory_order_seq_cst); }
    void end_transfer() noexcept { decrement(in_transit_); }

    /// True when nobody will use this end again: every process that used it or received it
    /// from another process closed it or died, and either there is such a process (the end
    /// was handed on, so its creator merely holding a copy does not count, as Python users
    /// forget to close it) or its creator closed it too. The asking process's own inherited,
    /// never used copy does not count either (a forked child waiting on one end inherits
    /// the other). With check_liveness false only explicit closes count (no syscalls).
    bool gone(bool check_liveness, pid_t asking) const noexcept {
        if (in_transit_.load(std::memory_order_seq_cst) != 0 || overflowed_.load(std::memory_order_relaxed) != 0)
            return false;  // a holder we cannot see may still use it
        if (pending_forks_.load(std::memory_order_seq_cst) != 0 &&
            std::chrono::steady_clock::now().time_since_epoch().count() <
                fork_grace_until_.load(std::memory_order_seq_cst))
            return false;  // a child being born holds it and has not enrolled yet
        bool handed_on = false;
        bool creator_open = false;
        for (const auto& entry : entries_) {
            const std::uint64_t value = entry.load(std::memory_order_seq_cst);
            if (value == 0) continue;
            if (pid_of(value) == asking && (value & (used_bit | inherited_bit)) == inherited_bit) continue;
            const bool open = (value & closed_bit) == 0 && (!check_liveness || pipe_process_alive(pid_of(value)));
            if ((value & (used_bit | inherited_bit)) != 0) {
                handed_on = true;
                if (open) return false;
            } else if (open) {
                creator_open = true;
            }
        }
        return handed_on || !creator_open;
    }

    static constexpr std::chrono::seconds fork_grace{2};

private:
    static void decrement(std::atomic<std::uint32_t>& counter) noexcept {
        std::uint32_t count = counter.load(std::memory_order_relaxed);
        while (count != 0 && !counter.compare_exchange_weak(count, count - 1, std::memory_order_seq_cst)) {
        }
    }

    static constexpr std::uint64_t used_bit = std::uint64_t{1} << 32;
    static constexpr std::uint64_t closed_bit = std::uint64_t{1} << 33;
    static constexpr std::uint64_t inherited_bit = std::uint64_t{1} << 34;
    static pid_t pid_of(std::uint64_t value) noexcept { return static_cast<pid_t>(value & 0xffff'ffffu); }

    void note(pid_t pid, std::uint64_t flags) noexcept {
        bool found = false;
        for (auto& entry : entries_) {
            std::uint64_t value = entry.load(std::memory_order_relaxed);
            while (pid_of(value) == pid) {
                found = true;
                const std::uint64_t wanted = (value | flags) & ~closed_bit;  // holding it again reopens it
                if (wanted == value || entry.compare_exchange_weak(value, wanted, std::memory_order_seq_cst)) break;
            }
        }
        if (found) return;
        const std::uint64_t fresh = static_cast<std::uint32_t>(pid) | flags;
        // First a free entry; failing that, one of a process that closed the end or died.
        for (int pass = 0; pass < 2; ++pass) {
            for (auto& entry : entries_) {
                std::uint64_t value = entry.load(std::memory_order_relaxed);
                const bool reusable =
                    value == 0 || (pass == 1 && ((value & closed_bit) != 0 || !pipe_process_alive(pid_of(value))));
                if (reusable && entry.compare_exchange_strong(value, fresh, std::memory_order_seq_cst)) return;
            }
        }
        overflowed_.store(1, std::memory_order_relaxed);  // too many holders to track: never declare it gone
    }

    std::atomic<std::uint64_t> entries_[capacity] = {};
    std::atomic<std::uint32_t> in_transit_{0};
    std::atomic<std::uint32_t> overflowed_{0};
    std::atomic<std::uint32_t> pending_forks_{0};
    std::atomic<std::int64_t> fork_grace_until_{0};  // steady_clock ticks
};

/// A Stop policy for waits on a pipe: stop once the peer end is gone. Closes are seen at
/// once (they wake the waiter); deaths send no wake-up, so liveness is re-checked every
/// poll_interval() (and not at all during a wait shorter than that).
class pipe_peer_watch {
public:
    static constexpr std::chrono::milliseconds liveness_interval{50};

    explicit pipe_peer_watch(const pipe_end_holders& peer) noexcept
        : peer_(peer), self_(pipe_pid_cache::current()),
          next_liveness_check_(std::chrono::steady_clock::now() + liveness_interval) {}

    bool operator()() noexcept {
        if (peer_.gone(false, self_)) return true;
        const auto now = std::chrono::steady_clock::now();
        if (now < next_liveness_check_) return false;
        next_liveness_check_ = now + liveness_interval;
        return peer_.gone(true, self_);
    }
    std::chrono::steady_clock::duration poll_interval() const noexcept { return liveness_interval; }

private:
    const pipe_end_holders& peer_;
    pid_t self_;
    std::chrono::steady_clock::time_point next_liveness_check_;
};

}  // namespace mpp::detail
