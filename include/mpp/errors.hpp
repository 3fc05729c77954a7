// mpp's exception types, all derived from mpp::Error (a std::runtime_error),
// and the registry that lets a task's exception cross the process boundary as
// its own type: standard types and register_exception<E>() types are rebuilt,
// anything else arrives as RemoteError carrying the original type name and what().
#pragma once

#include <cxxabi.h>
#include <sys/types.h>  // pid_t

#include <concepts>
#include <cstdlib>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <typeinfo>
#include <unordered_map>
#include <utility>

namespace mpp {

struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// AsyncResult::get(timeout) and friends ran out of time.
struct TimeoutError : Error {
    using Error::Error;
};

/// A task ran longer than PoolOptions::task_timeout; its worker was killed.
struct TaskTimeout : Error {
    using Error::Error;
};

/// The worker running the task died.
class WorkerLost : public Error {
public:
    WorkerLost(pid_t pid, int signal, int exit_code)
        : Error(describe(pid, signal, exit_code)), pid_(pid), signal_(signal), exit_code_(exit_code) {}
    WorkerLost(const std::string& message, pid_t pid, int signal, int exit_code)
        : Error(message), pid_(pid), signal_(signal), exit_code_(exit_code) {}

    pid_t pid() const noexcept { return pid_; }
    int signal() const noexcept { return signal_; }        // 0 if the worker exited
    int exit_code() const noexcept { return exit_code_; }  // meaningful when signal() == 0

private:
    static std::string describe(pid_t pid, int signal, int exit_code) {
        std::string text = "worker " + std::to_string(pid) + " died ";
        if (signal != 0) return text + "from signal " + std::to_string(signal);
        return text + "with exit code " + std::to_string(exit_code);
    }
    pid_t pid_;
    int signal_;
    int exit_code_;
};

/// The pool was terminated before the task finished.
struct PoolTerminated : Error {
    using Error::Error;
    PoolTerminated() : Error("the pool was terminated before this task finished") {}
};

/// A task threw an exception type the parent cannot rebuild.
class RemoteError : public Error {
public:
    RemoteError(std::string type_name, const std::string& what)
        : Error(what), type_name_(std::move(type_name)) {}
    const std::string& type_name() const noexcept { return type_name_; }  // demangled

private:
    std::string type_name_;
};

/// Malformed, truncated or trailing bytes, or a type that cannot be encoded.
struct SerializationError : Error {
    using Error::Error;
};

/// A non-blocking get on an empty queue.
struct Empty : Error {
    using Error::Error;
};

/// A non-blocking put on a full queue.
struct Full : Error {
    using Error::Error;
};

/// recv() on a connection whose peer closed or died.
struct EOFError : Error {
    using Error::Error;
};

/// The lock's previous holder died holding it. The lock is now held by the thrower's caller.
struct BrokenLock : Error {
    using Error::Error;
};

/// A Barrier was aborted or one of its parties died.
struct BrokenBarrier : Error {
    using Error::Error;
};

namespace detail {

/// The readable name of a type as the compiler spells it ("std::out_of_range").
inline std::string demangle(const char* mangled) {
    int status = 0;
    std::unique_ptr<char, void (*)(void*)> name(abi::__cxa_demangle(mangled, nullptr, nullptr, &status), std::free);
    return status == 0 && name ? std::string(name.get()) : std::string(mangled);
}

/// Rebuilds exceptions from (mangled type name, what()) pairs. Standard types are
/// known from the start; user types join through mpp::register_exception<E>().
class exception_registry {
public:
    using factory = std::function<std::exception_ptr(const std::string&)>;

    static exception_registry& instance() {
        static exception_registry registry;
        return registry;
    }

    void add(const char* mangled_name, factory make) {
        std::lock_guard guard(mutex_);
        factories_[mangled_name] = std::move(make);
    }

    /// The exception to rethrow in the parent for one that a worker caught.
    std::exception_ptr rebuild(const std::string& mangled_name, const std::string& what) const {
        {
            std::lock_guard guard(mutex_);
            if (auto found = factories_.find(mangled_name); found != factories_.end()) return found->second(what);
        }
        return std::make_exception_ptr(RemoteError(demangle(mangled_name.c_str()), what));
    }

private:
    template <class E>
    void add_standard() {
        factories_[typeid(E).name()] = [](const std::string& what) { return std::make_exception_ptr(E(what)); };
    }

    exception_registry() {
        add_standard<std::runtime_error>();
        add_standard<std::logic_error>();
        add_standard<std::invalid_argument>();
        add_standard<std::out_of_range>();
        add_standard<std::domain_error>();
        add_standard<std::length_error>();
        add_standard<std::range_error>();
        add_standard<std::overflow_error>();
        add_standard<std::underflow_error>();
        factories_[typeid(std::bad_alloc).name()] = [](const std::string&) {
            return std::make_exception_ptr(std::bad_alloc());
        };
        add_standard<Error>();
        add_standard<TimeoutError>();
        add_standard<TaskTimeout>();
        add_standard<PoolTerminated>();
        add_standard<SerializationError>();
        add_standard<Empty>();
        add_standard<Full>();
        add_standard<EOFError>();
        add_standard<BrokenLock>();
        add_standard<BrokenBarrier>();
    }

    mutable std::mutex mutex_;
    std::unordered_map<std::string, factory> factories_;
};

}  // namespace detail

/// Lets exceptions of type E thrown by tasks be rethrown in the parent as E
/// (rather than RemoteError). Only the parent needs to register, at any time.
template <class E>
    requires std::derived_from<E, std::exception> && std::constructible_from<E, std::string>
void register_exception() {
    detail::exception_registry::instance().add(typeid(E).name(), [](const std::string& what) {
        return std::make_exception_ptr(E(what));
    });
}

}  // namespace mpp
