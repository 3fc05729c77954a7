// Process: Python's multiprocessing.Process on fork(), plus cpu_count(), current_process()
// and active_children(). The child runs its target and always leaves through _exit (it never
// returns into the caller's code); every child is reaped in exactly one place, and waiting
// uses a pidfd, so mpp never touches SIGCHLD.
#pragma once

#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#if defined(__GLIBC__)  // defined by the headers above
#include <malloc.h>
#endif

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "mpp/detail/futex.hpp"
#include "mpp/detail/segment.hpp"
#include "mpp/errors.hpp"

namespace mpp {

/// What current_process() reports: the calling process's pid and its Python-style name
/// ("MainProcess", "Process-1", "Process-1:2" for a child's child...).
struct ProcessInfo {
    pid_t pid;
    std::string name;
};

namespace detail {

/// What a parent knows about one child it forked. Guarded by process_table::mutex.
struct child_record {
    pid_t pid = 0;                  // 0 until forked
    pid_t parent = 0;               // the process that forked it: the only one that may reap it
    int pidfd = -1;                 // readable once the child exits; -1 if the kernel has no pidfd_open.
                                    // Closed only when the owning Process goes away.
    std::optional<int> exitcode;    // set exactly once, by the reaping waitpid
};

/// Per-process bookkeeping: this process's name and the children its Process objects started.
/// Fork handlers keep it sane in every child, whoever forks: the table's mutex is never
/// inherited locked, and a child starts with no children of its own.
class process_table {
public:
    static process_table& instance() {
        static process_table table;
        return table;
    }

    std::mutex mutex;
    std::string name = "MainProcess";
    std::vector<unsigned> identity;          // Python's _identity: Process-1:2 is {1, 2}
    unsigned next_child_number = 1;          // numbers the next Process built here
    std::vector<child_record*> children;     // records of this process's live Process objects

    /// Reaps `child` if it has exited, without blocking. Call with `mutex` held.
    /// This is the one place any mpp Process child is reaped.
    static bool poll_locked(child_record& child) {
        if (child.exitcode) return true;
        if (child.pid <= 0 || child.parent != ::getpid()) return false;
        int status = 0;
        pid_t reaped;
        do {
            reaped = ::waitpid(child.pid, &status, WNOHANG);
        } while (reaped < 0 && errno == EINTR);
        if (reaped == 0) return false;
        if (reaped == child.pid) {
            child.exitcode = WIFSIGNALED(status) ? -WTERMSIG(status) : WEXITSTATUS(status);
        } else {
            // ECHILD: someone else reaped it (SIGCHLD set to SIG_IGN, or a stray waitpid(-1)).
            // The status is lost; report a plain exit rather than waiting forever.
            child.exitcode = 0;
        }
        // The pidfd stays open (and readable) until the Process is destroyed, so a thread still
        // polling it can never end up polling a recycled descriptor number.
        return true;
    }

private:
    process_table() { ::pthread_atfork(&before_fork, &after_fork_in_parent, &after_fork_in_child); }

    static void before_fork() noexcept { instance().mutex.lock(); }
    static void after_fork_in_parent() noexcept { instance().mutex.unlock(); }
    static void after_fork_in_child() noexcept {
        process_table& table = instance();
        // The forking thread locked it in before_fork; the child's only thread is that thread.
        table.mutex.unlock();
        for (child_record* sibling : table.children) {
            if (sibling->pidfd >= 0) ::close(sibling->pidfd);  // the parent's, not ours to keep
            sibling->pidfd = -1;
        }
        table.children.clear();
        table.next_child_number = 1;
    }
};

inline int open_pidfd(pid_t pid) noexcept {
#ifdef SYS_pidfd_open
    const long fd = ::syscall(SYS_pidfd_open, pid, 0);  // O_CLOEXEC by definition
    return fd < 0 ? -1 : static_cast<int>(fd);
#else
    (void)pid;
    return -1;
#endif
}

/// Sleeps until `pidfd` is readable (the child exited) or `deadline` passes.
inline void wait_for_exit(int pidfd, steady_deadline deadline) {
    using namespace std::chrono;
    if (pidfd < 0) {
        // No pidfd (very old kernel): a short nap, then the caller polls waitpid again.
        const auto nap = std::min<steady_clock::duration>(milliseconds(2), deadline - steady_clock::now());
        if (nap > steady_clock::duration::zero()) std::this_thread::sleep_for(nap);
        return;
    }
    pollfd watch{pidfd, POLLIN, 0};
    if (deadline == steady_deadline::max()) {
        ::ppoll(&watch, 1, nullptr, nullptr);
        return;
    }
    const auto left = deadline - steady_clock::now();
    if (left <= steady_clock::duration::zero()) return;
    const auto secs = duration_cast<seconds>(left);
    timespec timeout{};
    timeout.tv_sec = static_cast<time_t>(secs.count());
    timeout.tv_nsec = static_cast<long>(duration_cast<nanoseconds>(left - secs).count());
    ::ppoll(&watch, 1, &timeout, nullptr);  // EINTR or spurious: the caller loops
}

/// The type-erased target of a Process: a callable and its copied arguments.
struct process_target {
    virtual ~process_target() = default;
    virtual void run() = 0;
};

template <class F, class... Args>
struct bound_target final : process_target {
    bound_target(F f, Args... args) : function(std::move(f)), arguments(std::move(args)...) {}
    void run() override { std::apply(std::move(function), std::move(arguments)); }
    F function;
    std::tuple<Args...> arguments;
};

/// Reads one integer-ish line from a file; nullopt if it is missing or unreadable.
inline std::optional<std::string> read_first_line(const std::string& path) {
    std::ifstream file(path);
    std::string line;
    if (!file || !std::getline(file, line)) return std::nullopt;
    return line;
}

/// CPUs allowed by a cgroup quota, or nullopt if unlimited. Checks cgroup v2 `cpu.max` from the
/// process's own cgroup up to the root (a parent's quota limits its children too), then v1.
/// `root` prefixes every path (tests point it at a fake /proc and /sys).
inline std::optional<std::size_t> cgroup_cpu_limit(const std::string& root = "") {
    std::optional<double> limit;
    auto consider = [&](double quota, double period) {
        if (quota > 0 && period > 0) limit = std::min(limit.value_or(quota / period), quota / period);
    };
    std::ifstream membership(root + "/proc/self/cgroup");
    std::string line;
    while (std::getline(membership, line)) {
        // "hierarchy-id:controllers:path"
        const auto first = line.find(':');
        const auto second = line.find(':', first + 1);
        if (first == std::string::npos || second == std::string::npos) continue;
        const std::string controllers = line.substr(first + 1, second - first - 1);
        std::string path = line.substr(second + 1);
        if (line.compare(0, first, "0") == 0 && controllers.empty()) {
            for (;;) {
                // The unified hierarchy: mounted at /sys/fs/cgroup, or beside v1 in hybrid setups.
                for (const char* mount : {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"}) {
                    if (auto text = read_first_line(root + mount + path + "/cpu.max")) {
                        if (text->compare(0, 3, "max") != 0) {
                            double quota = 0, period = 100000;
                            if (std::sscanf(text->c_str(), "%lf %lf", &quota, &period) >= 1) consider(quota, period);
                        }
                        break;
                    }
                }
                if (path.empty() || path == "/") break;
                path = path.substr(0, path.rfind('/'));
            }
        } else if (("," + controllers + ",").find(",cpu,") != std::string::npos) {
            for (const std::string mount : {"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"}) {
                // Inside a container the process's path is often the mount's root.
                for (const std::string& dir : {root + mount + path, root + mount}) {
                    auto quota = read_first_line(dir + "/cpu.cfs_quota_us");
                    auto period = read_first_line(dir + "/cpu.cfs_period_us");
                    if (quota && period) {
                        consider(std::atof(quota->c_str()), std::atof(period->c_str()));
                        break;
                    }
                }
            }
        }
    }
    if (!limit) return std::nullopt;
    const auto whole = static_cast<std::size_t>(*limit);
    return std::max<std::size_t>(1, whole + (static_cast<double>(whole) < *limit ? 1 : 0));  // round up
}

inline std::size_t affinity_cpu_count() {
    const long configured = ::sysconf(_SC_NPROCESSORS_CONF);
    const int capacity = static_cast<int>(std::max<long>(configured, 1024));
    cpu_set_t* set = CPU_ALLOC(capacity);
    if (set == nullptr) return static_cast<std::size_t>(std::max<long>(configured, 1));
    const std::size_t bytes = CPU_ALLOC_SIZE(capacity);
    std::size_t count = 0;
    if (::sched_getaffinity(0, bytes, set) == 0) count = static_cast<std::size_t>(CPU_COUNT_S(bytes, set));
    CPU_FREE(set);
    if (count == 0) count = static_cast<std::size_t>(std::max<long>(::sysconf(_SC_NPROCESSORS_ONLN), 1));
    return count;
}

/// Flushes what stdio and iostreams buffered, so a child cannot write the parent's pending output twice.
inline void flush_standard_streams() noexcept {
    try {
        std::cout.flush();
        std::cerr.flush();
        std::clog.flush();
    } catch (...) {
    }
    std::fflush(nullptr);
}

/// Hands the heap pages malloc keeps free back to the kernel before a fork. fork() copies a
/// page-table entry for every resident page and the child's exit frees them all again, so a
/// parent whose malloc holds freed memory (measured: 28 MB after big messages, which made a
/// no-op Process cost 1-4 ms instead of 0.2 ms) pays for memory it does not use. When nothing
/// is left to give back this costs a few microseconds; memory in use is untouched.
inline void release_free_heap() noexcept {
#if defined(__GLIBC__)
    ::malloc_trim(0);
#endif
}

}  // namespace detail

/// CPUs this process may actually use: the affinity mask, further limited by a cgroup CPU
/// quota (v2 cpu.max or v1 cfs_quota_us, rounded up). Always at least 1.
inline std::size_t cpu_count() {
    std::size_t count = detail::affinity_cpu_count();
    if (auto quota = detail::cgroup_cpu_limit()) count = std::min(count, *quota);
    return std::max<std::size_t>(count, 1);
}

/// The calling process: its pid and name ("MainProcess" in the program's first process).
inline ProcessInfo current_process() {
    auto& table = detail::process_table::instance();
    std::lock_guard guard(table.mutex);
    return ProcessInfo{::getpid(), table.name};
}

/// Pids of the live children started by mpp::Process in this process. Like Python, it reaps
/// the children that have finished (their Process objects then report the exit code).
inline std::vector<pid_t> active_children() {
    auto& table = detail::process_table::instance();
    std::lock_guard guard(table.mutex);
    std::vector<pid_t> alive;
    for (detail::child_record* child : table.children) {
        if (child->pid > 0 && !detail::process_table::poll_locked(*child)) alive.push_back(child->pid);
    }
    return alive;
}

/// A forked child process running `f(args...)`, like Python's multiprocessing.Process.
/// Arguments are copied (as with std::thread); any callable works, captures included,
/// because the child is a fork and sees a copy of the parent's memory. The child leaves
/// through _exit: 0 after the target returns, 1 (printing what()) if an exception escapes.
/// Movable, not copyable. Not meant to be used from several threads at once.
class Process {
public:
    template <class F, class... Args>
        requires(!std::same_as<std::remove_cvref_t<F>, Process>) && std::invocable<std::decay_t<F>, std::decay_t<Args>...>
    explicit Process(F f, Args... args)
        : state_(std::make_unique<state>(
              std::make_unique<detail::bound_target<std::decay_t<F>, std::decay_t<Args>...>>(std::move(f),
                                                                                               std::move(args)...))) {}

    Process(Process&&) noexcept = default;
    Process& operator=(Process&& other) noexcept {
        if (this != &other) {
            finish();
            state_ = std::move(other.state_);
        }
        return *this;
    }
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;

    /// Started and not joined: joins a non-daemon child; terminates (SIGTERM, then SIGKILL after
    /// a second) and reaps a daemon one.
    ~Process() { finish(); }

    /// Forks the child. std::logic_error if already started.
    void start() {
        state& self = checked("start");
        if (self.started) throw std::logic_error("mpp::Process::start: a process can only be started once");
        // Primitives made after start() must be shared with the child: the segment exists before the fork.
        detail::shared_segment::instance();
        auto& table = detail::process_table::instance();
        self.record.parent = ::getpid();
        {
            std::lock_guard guard(table.mutex);
            table.children.push_back(&self.record);  // before the fork, so nothing can fail after it
        }
        detail::flush_standard_streams();
        detail::release_free_heap();
        // SIGTERM stays blocked across the fork until the child has reset its handler, so an early
        // terminate() can never run the parent's handler in the child.
        sigset_t term, previous;
        sigemptyset(&term);
        sigaddset(&term, SIGTERM);
        ::pthread_sigmask(SIG_BLOCK, &term, &previous);
        const pid_t pid = ::fork();
        if (pid == 0) run_child(self, previous);  // never returns
        const int fork_error = errno;
        ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
        if (pid < 0) {
            forget(self.record);
            throw std::system_error(fork_error, std::generic_category(), "mpp::Process::start: fork failed");
        }
        const int pidfd = detail::open_pidfd(pid);
        {
            std::lock_guard guard(table.mutex);
            self.record.pid = pid;
            self.record.pidfd = pidfd;
        }
        self.started = true;
    }

    /// Waits until the child exits. std::logic_error if it was never started.
    void join() { wait_until(detail::steady_deadline::max(), "join"); }

    /// Waits at most `timeout`; true if the child has exited (then exitcode() has a value).
    template <class Rep, class Period>
    bool join(std::chrono::duration<Rep, Period> timeout) {
        return wait_until(detail::deadline_after(timeout), "join");
    }

    /// True between start() and the child's exit.
    bool is_alive() const {
        if (!state_ || !state_->started) return false;
        auto& table = detail::process_table::instance();
        std::lock_guard guard(table.mutex);
        return !detail::process_table::poll_locked(state_->record);
    }

    /// The child's pid; 0 before start().
    pid_t pid() const noexcept { return state_ ? state_->record.pid : 0; }

    /// nullopt while running or before start(); the exit status once it exited; -N if signal N killed it.
    std::optional<int> exitcode() const {
        if (!state_ || !state_->started) return std::nullopt;
        auto& table = detail::process_table::instance();
        std::lock_guard guard(table.mutex);
        detail::process_table::poll_locked(state_->record);
        return state_->record.exitcode;
    }

    /// Sends SIGTERM (does nothing once the child has exited). std::logic_error before start().
    void terminate() { send("terminate", SIGTERM); }
    /// Sends SIGKILL (does nothing once the child has exited). std::logic_error before start().
    void kill() { send("kill", SIGKILL); }

    /// A daemon child is terminated rather than waited for when its Process is destroyed.
    /// Set it before start(): std::logic_error afterwards.
    void daemon(bool is_daemon) {
        state& self = checked("daemon");
        if (self.started) throw std::logic_error("mpp::Process::daemon: set it before start()");
        self.daemon = is_daemon;
    }
    bool daemon() const noexcept { return state_ && state_->daemon; }

    /// "Process-N" by default (N counts the Process objects made in this process, from 1), as in Python.
    std::string name() const { return state_ ? state_->name : std::string(); }
    void name(std::string new_name) { checked("name").name = std::move(new_name); }

private:
    struct state {
        explicit state(std::unique_ptr<detail::process_target> body) : target(std::move(body)) {
            auto& table = detail::process_table::instance();
            std::lock_guard guard(table.mutex);
            identity = table.identity;
            identity.push_back(table.next_child_number++);
            name = "Process-";
            for (std::size_t i = 0; i < identity.size(); ++i) {
                if (i != 0) name += ':';  // two appends: g++ 12 -O3 warns falsely on "" + string (PR 105651)
                name += std::to_string(identity[i]);
            }
        }
        std::unique_ptr<detail::process_target> target;
        std::string name;
        std::vector<unsigned> identity;
        bool daemon = false;
        bool started = false;
        detail::child_record record;
    };

    state& checked(const char* operation) const {
        if (!state_) throw std::logic_error(std::string("mpp::Process::") + operation + ": the Process was moved from");
        return *state_;
    }

    [[noreturn]] static void run_child(state& self, sigset_t signal_mask) noexcept {
        {
            // The fork handler already emptied the children list; now this process takes its name.
            auto& table = detail::process_table::instance();
            std::lock_guard guard(table.mutex);
            table.name = self.name;
            table.identity = self.identity;
        }
        // terminate() must mean "stop", as in Python: the parent's SIGTERM handler (a test runner's,
        // a server's graceful shutdown) is not the child's. The target may install its own.
        ::signal(SIGTERM, SIG_DFL);
        sigdelset(&signal_mask, SIGTERM);
        ::pthread_sigmask(SIG_SETMASK, &signal_mask, nullptr);
        int code = 0;
        try {
            self.target->run();
        } catch (const std::exception& error) {
            std::fprintf(stderr, "Process %s: uncaught %s: %s\n", self.name.c_str(),
                         detail::demangle(typeid(error).name()).c_str(), error.what());
            code = 1;
        } catch (...) {
            std::fprintf(stderr, "Process %s: uncaught exception of a type not derived from std::exception\n",
                         self.name.c_str());
            code = 1;
        }
        detail::flush_standard_streams();
        ::_exit(code);  // never return into the parent's program (or a test runner's remaining tests)
    }

    bool wait_until(detail::steady_deadline deadline, const char* operation) {
        state& self = checked(operation);
        if (!self.started) throw std::logic_error(std::string("mpp::Process::") + operation + ": the process was never started");
        if (self.record.parent != ::getpid())
            throw std::logic_error(std::string("mpp::Process::") + operation + ": can only join a child of this process");
        auto& table = detail::process_table::instance();
        for (;;) {
            int pidfd;
            {
                std::lock_guard guard(table.mutex);
                if (detail::process_table::poll_locked(self.record)) return true;
                pidfd = self.record.pidfd;
            }
            if (std::chrono::steady_clock::now() >= deadline) return false;
            // Only this thread joins this Process, so the pidfd stays open while we poll it.
            detail::wait_for_exit(pidfd, deadline);
        }
    }

    void send(const char* operation, int signal) {
        state& self = checked(operation);
        if (!self.started) throw std::logic_error(std::string("mpp::Process::") + operation + ": the process was never started");
        auto& table = detail::process_table::instance();
        std::lock_guard guard(table.mutex);
        // Not yet reaped, so the pid still names our child (a zombie at worst), never a stranger.
        if (self.record.parent == ::getpid() && !detail::process_table::poll_locked(self.record))
            ::kill(self.record.pid, signal);
    }

    static void forget(detail::child_record& record) noexcept {
        auto& table = detail::process_table::instance();
        std::lock_guard guard(table.mutex);
        std::erase(table.children, &record);
        if (record.pidfd >= 0) ::close(record.pidfd);
        record.pidfd = -1;
    }

    void finish() noexcept {
        if (!state_ || !state_->started) {
            state_.reset();
            return;
        }
        state& self = *state_;
        // In a process that merely inherited this object through a fork, the child is not ours.
        if (self.record.parent == ::getpid()) {
            try {
                if (self.daemon) {
                    terminate();
                    if (!join(std::chrono::seconds(1))) {
                        kill();
                        join();
                    }
                } else {
                    join();
                }
            } catch (...) {
            }
            forget(self.record);
        }
        state_.reset();
    }

    std::unique_ptr<state> state_;
};

}  // namespace mpp
