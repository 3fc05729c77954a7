// A process-shared robust mutex that lives in shared memory. When its holder
// dies, the next locker gets the lock with `owner_died` set (and the mutex made
// consistent again), instead of hanging forever as Boost's interprocess_mutex does.
#pragma once

#include <pthread.h>

#include <cerrno>
#include <chrono>
#include <ctime>
#include <system_error>

#include "mpp/detail/futex.hpp"

namespace mpp::detail {

enum class lock_status {
    acquired,    // normal acquisition
    owner_died,  // acquired, but the previous holder died holding it: protected state may be torn
    timed_out,   // not acquired
};

class robust_mutex {
public:
    robust_mutex() {
        pthread_mutexattr_t attr;
        check(pthread_mutexattr_init(&attr), "pthread_mutexattr_init");
        pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
        pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
        const int rc = pthread_mutex_init(&mutex_, &attr);
        pthread_mutexattr_destroy(&attr);
        check(rc, "pthread_mutex_init");
    }
    ~robust_mutex() { pthread_mutex_destroy(&mutex_); }
    robust_mutex(const robust_mutex&) = delete;
    robust_mutex& operator=(const robust_mutex&) = delete;

    lock_status lock() { return settle(pthread_mutex_lock(&mutex_), "pthread_mutex_lock"); }

    /// Returns timed_out when the mutex is held by someone else.
    lock_status try_lock() { return settle(pthread_mutex_trylock(&mutex_), "pthread_mutex_trylock"); }

    lock_status lock_until(steady_deadline deadline) {
        using namespace std::chrono;
        if (deadline == steady_deadline::max()) return lock();
        const auto since_epoch = deadline.time_since_epoch();
        const auto secs = duration_cast<seconds>(since_epoch);
        timespec absolute{};
        absolute.tv_sec = static_cast<time_t>(secs.count());
        absolute.tv_nsec = static_cast<long>(duration_cast<nanoseconds>(since_epoch - secs).count());
        return settle(pthread_mutex_clocklock(&mutex_, CLOCK_MONOTONIC, &absolute), "pthread_mutex_clocklock");
    }

    void unlock() noexcept { pthread_mutex_unlock(&mutex_); }

private:
    static void check(int rc, const char* what) {
        if (rc != 0) throw std::system_error(rc, std::generic_category(), what);
    }

    lock_status settle(int rc, const char* what) {
        switch (rc) {
            case 0:
                return lock_status::acquired;
            case EOWNERDEAD:
                pthread_mutex_consistent(&mutex_);
                return lock_status::owner_died;
            case EBUSY:
            case ETIMEDOUT:
                return lock_status::timed_out;
            default:
                check(rc, what);
                return lock_status::timed_out;
        }
    }

    pthread_mutex_t mutex_;
};

/// Scoped holder for internal critical sections where a dead previous holder is
/// tolerable (the protected structure stays consistent at every step).
class robust_guard {
public:
    explicit robust_guard(robust_mutex& mutex) : mutex_(mutex) { mutex_.lock(); }
    ~robust_guard() { mutex_.unlock(); }
    robust_guard(const robust_guard&) = delete;
    robust_guard& operator=(const robust_guard&) = delete;

private:
    robust_mutex& mutex_;
};

}  // namespace mpp::detail
