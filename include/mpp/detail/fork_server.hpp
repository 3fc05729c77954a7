// The fork server: a small single-threaded process forked when a pool is built.
// It forks every worker (so replacements start from the construction-time state,
// whatever threads and locks the parent has by then), is the one owner that
// reaps them, reports each death with its exit status, and kills all of them the
// moment the parent process disappears.
#pragma once

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <functional>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <vector>

#include "mpp/detail/internal_fds.hpp"

namespace mpp::detail {

/// How a worker ended, as its reaper saw it.
struct worker_exit {
    std::size_t slot = 0;
    pid_t pid = 0;
    int signal = 0;     // the signal that killed it, 0 if it exited
    int exit_code = 0;  // meaningful when signal == 0
};

inline int pidfd_open(pid_t pid) noexcept { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

class fork_server {
public:
    /// Runs in each new worker process with its slot number; it must not return
    /// (if it does, the worker exits with code 0).
    using worker_entry = std::function<void(std::size_t slot)>;

    /// Runs in the server after it reported a death, to wake the pool (through shared memory).
    using death_signal = std::function<void()>;

    /// Forks the server now, from the calling thread, and returns at once. The
    /// server forks the first `workers` workers (slots 0 to workers - 1) as soon
    /// as it runs, unasked, and announces them together (await_first()), so no
    /// request round trip is paid per worker and the caller goes on meanwhile.
    fork_server(worker_entry entry, death_signal on_death, std::size_t workers = 0) : first_pids_(workers) {
        int fds[2];
        if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0)
            throw std::system_error(errno, std::generic_category(), "mpp: socketpair for the fork server");
        const pid_t pid = ::fork();
        if (pid < 0) {
            const int error = errno;
            ::close(fds[0]);
            ::close(fds[1]);
            throw std::system_error(error, std::generic_category(), "mpp: fork of the fork server");
        }
        if (pid == 0) {
            ::close(fds[0]);
            internal_fds::close_all_except({fds[1]});
            serve(fds[1], entry, on_death, workers);  // never returns
        }
        ::close(fds[1]);
        socket_ = fds[0];
        pid_ = pid;
        internal_fds::add(socket_);
    }

    fork_server(const fork_server&) = delete;
    fork_server& operator=(const fork_server&) = delete;

    ~fork_server() {
        if (pid_ > 0) shutdown(/*kill_workers=*/true);
    }

    /// Forks a worker for `slot` and returns its pid. Death notices that arrive
    /// meanwhile are kept for next_exit().
    pid_t spawn(std::size_t slot) {
        send({request::spawn, static_cast<std::uint32_t>(slot), 0, 0});
        return spawned(slot);
    }

    /// Waits for the server to announce the first workers, whose pids
    /// first_pids() then lists by slot; std::system_error if one could not be
    /// forked. Death notices that arrive meanwhile are kept for next_exit().
    void await_first() {
        while (!first_started()) file(receive(/*block=*/true).value());
    }
    const std::vector<pid_t>& first_pids() const noexcept { return first_pids_; }

    void kill(pid_t pid, int signal) { send({request::kill, 0, pid, signal}); }

    /// Throws if the server itself is gone (its end of the socket closed): its
    /// workers died with it and nobody will report them, so nothing may wait for them.
    void check_alive() const {
        pollfd peer{socket_, 0, 0};
        if (::poll(&peer, 1, 0) == 1 && (peer.revents & (POLLHUP | POLLERR)) != 0)
            throw std::runtime_error("mpp: the pool's fork server died unexpectedly");
    }

    /// The next worker death, if one was reported. Never blocks.
    std::optional<worker_exit> next_exit() {
        while (auto reply = receive(/*block=*/false)) file(*reply);
        if (exits_.empty()) return std::nullopt;
        worker_exit next = exits_.front();
        exits_.pop_front();
        return next;
    }

    /// Asks the server to exit once its workers have exited (killing them first
    /// when `kill_workers`), without waiting for it: its workers' exits and its
    /// own then overlap with whatever the caller does before shutdown() reaps it.
    void request_exit(bool kill_workers) noexcept {
        if (pid_ <= 0) return;
        try {
            send({kill_workers ? request::kill_all_and_exit : request::exit_when_idle, 0, 0, 0});
        } catch (const std::exception&) {
            // The server is already gone; reaping it is all that is left.
        }
    }

    /// request_exit(kill_workers), then reaps the server. Idempotent.
    void shutdown(bool kill_workers) {
        if (pid_ <= 0) return;
        request_exit(kill_workers);
        int status = 0;
        while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
        internal_fds::remove(socket_);
        ::close(socket_);
        socket_ = -1;
        pid_ = -1;
    }

private:
    struct request {
        enum : std::uint32_t { spawn = 1, kill = 2, exit_when_idle = 3, kill_all_and_exit = 4 };
        std::uint32_t op;
        std::uint32_t slot;
        std::int32_t pid;
        std::int32_t signal;
    };
    struct notice {
        enum : std::uint32_t { spawned = 1, died = 2, spawn_failed = 3 };
        std::uint32_t kind;
        std::uint32_t slot;
        std::int32_t pid;
        std::int32_t signal;
        std::int32_t exit_code;
    };

    static worker_exit to_exit(const notice& n) { return {n.slot, n.pid, n.signal, n.exit_code}; }

    bool first_started() const noexcept { return first_announced_ == first_pids_.size(); }

    pid_t spawned(std::size_t slot) {
        for (;;) {
            const notice reply = receive(/*block=*/true).value();
            if (first_started() && reply.kind == notice::spawned && reply.slot == slot) return reply.pid;
            if (first_started() && reply.kind == notice::spawn_failed && reply.slot == slot)
                throw std::system_error(reply.exit_code, std::generic_category(), "mpp: fork of a worker");
            file(reply);
        }
    }

    /// Keeps a notice that is not the reply being waited for.
    void file(const notice& n) {
        if (n.kind == notice::died) {
            exits_.push_back(to_exit(n));
        } else if (!first_started() && n.slot < first_pids_.size()) {
            if (n.kind == notice::spawn_failed)
                throw std::system_error(n.exit_code, std::generic_category(), "mpp: fork of a worker");
            first_pids_[n.slot] = n.pid;
            ++first_announced_;
        }
    }

    void send(const request& r) {
        while (::send(socket_, &r, sizeof r, MSG_NOSIGNAL) < 0) {
            if (errno != EINTR) throw std::system_error(errno, std::generic_category(), "mpp: fork server request");
        }
    }

    std::optional<notice> receive(bool block) {
        notice n{};
        for (;;) {
            const ssize_t got = ::recv(socket_, &n, sizeof n, block ? 0 : MSG_DONTWAIT);
            if (got == static_cast<ssize_t>(sizeof n)) return n;
            if (got < 0 && errno == EINTR) continue;
            if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return std::nullopt;
            throw std::runtime_error("mpp: the pool's fork server died unexpectedly");
        }
    }

    // ---- the server process -------------------------------------------------

    struct child {
        pid_t pid;
        int pidfd;
        std::uint32_t slot;
    };

    [[noreturn]] static void serve(int socket, const worker_entry& entry, const death_signal& on_death,
                                   std::size_t initial_workers) {
        ::signal(SIGINT, SIG_IGN);  // Ctrl-C is the parent's to handle, once
        const pid_t server = ::getpid();
        std::vector<child> children;
        std::vector<pollfd> watched;
        bool exiting = false;
        auto reply = [&](const notice& n) { ::send(socket, &n, sizeof n, MSG_NOSIGNAL); };
        auto kill_all = [&] {
            for (const child& c : children) ::kill(c.pid, SIGKILL);
        };
        auto spawn = [&](std::uint32_t slot) {
            const pid_t pid = ::fork();
            if (pid == 0) {
                ::close(socket);
                for (const child& c : children) ::close(c.pidfd);
                start_worker(server, entry, slot);
            }
            if (pid < 0) return notice{notice::spawn_failed, slot, 0, 0, errno};
            children.push_back({pid, pidfd_open(pid), slot});
            return notice{notice::spawned, slot, pid, 0, 0};
        };
        auto reap_all_and_exit = [&] {
            kill_all();
            for (const child& c : children) {
                while (::waitpid(c.pid, nullptr, 0) < 0 && errno == EINTR) {
                }
            }
            ::_exit(0);
        };

        // All first workers are forked before any is announced: the pool wakes
        // once for the lot instead of racing the forks for the CPU.
        std::vector<notice> first;
        for (std::size_t slot = 0; slot < initial_workers; ++slot) first.push_back(spawn(static_cast<std::uint32_t>(slot)));
        for (const notice& n : first) reply(n);

        for (;;) {
            if (exiting && children.empty()) ::_exit(0);
            watched.clear();
            watched.push_back({socket, POLLIN, 0});
            for (const child& c : children) watched.push_back({c.pidfd, POLLIN, 0});
            if (::poll(watched.data(), watched.size(), -1) < 0) continue;

            if (watched[0].revents != 0) {
                request r{};
                const ssize_t got = ::recv(socket, &r, sizeof r, MSG_DONTWAIT);
                if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN)) reap_all_and_exit();  // parent gone
                if (got == static_cast<ssize_t>(sizeof r)) {
                    switch (r.op) {
                        case request::spawn:
                            reply(spawn(r.slot));
                            break;
                        case request::kill:
                            for (const child& c : children)
                                if (c.pid == r.pid) ::kill(c.pid, r.signal);
                            break;
                        case request::exit_when_idle:
                            exiting = true;
                            break;
                        case request::kill_all_and_exit:
                            reap_all_and_exit();
                    }
                }
            }

            // Reap whichever children exited (their pidfds turned readable).
            for (std::size_t i = 0; i < children.size();) {
                int status = 0;
                const pid_t done = ::waitpid(children[i].pid, &status, WNOHANG);
                if (done != children[i].pid) {
                    ++i;
                    continue;
                }
                notice death{notice::died, children[i].slot, children[i].pid, 0, 0};
                if (WIFSIGNALED(status)) death.signal = WTERMSIG(status);
                if (WIFEXITED(status)) death.exit_code = WEXITSTATUS(status);
                ::close(children[i].pidfd);
                children.erase(children.begin() + static_cast<std::ptrdiff_t>(i));
                reply(death);
                on_death();
            }
        }
    }

    [[noreturn]] static void start_worker(pid_t server, const worker_entry& entry, std::uint32_t slot) {
        // The worker dies with the fork server (which is single-threaded, so the
        // "thread that forked us" is the whole server), and checks the server did
        // not vanish before the setting took effect.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != server) ::_exit(1);
        ::signal(SIGINT, SIG_IGN);
        // The parent's crash handlers (a test framework's, a logger's) would run in
        // the worker and could hide how it died: a crash here must reach the fork
        // server as the signal itself, for WorkerLost to report it.
        for (int crash : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTERM}) ::signal(crash, SIG_DFL);
        entry(slot);
        ::_exit(0);
    }

    int socket_ = -1;
    pid_t pid_ = -1;
    std::deque<worker_exit> exits_;
    std::vector<pid_t> first_pids_;  // the first workers', by slot
    std::size_t first_announced_ = 0;
};

}  // namespace mpp::detail
