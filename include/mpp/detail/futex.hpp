// Futex waits and wakes on a 32-bit atomic word in shared memory, plus the
// bounded spin that precedes them. A process that dies while waiting leaves no
// trace, which is why every blocking wait in mpp ends up here.
#pragma once

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdint>
#include <ctime>

namespace mpp::detail {

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t) &&
                  std::atomic<std::uint32_t>::is_always_lock_free,
              "a futex word must be a plain lock-free 32-bit atomic");

using futex_word = std::atomic<std::uint32_t>;
using steady_deadline = std::chrono::steady_clock::time_point;

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield" ::: "memory");
#endif
}

/// Sleeps while `word` still holds `expected`. May return spuriously: callers loop.
/// Not FUTEX_PRIVATE: the word lives in memory shared between processes.
inline void futex_wait(const futex_word& word, std::uint32_t expected) noexcept {
    ::syscall(SYS_futex, const_cast<futex_word*>(&word), FUTEX_WAIT, expected, nullptr, nullptr, 0);
}

/// As futex_wait, but gives up at `deadline`. Returns false only when the deadline passed.
/// FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time, which is what steady_clock reads.
inline bool futex_wait_until(const futex_word& word, std::uint32_t expected, steady_deadline deadline) noexcept {
    using namespace std::chrono;
    const auto since_epoch = deadline.time_since_epoch();
    if (since_epoch <= steady_clock::now().time_since_epoch()) return false;
    const auto secs = duration_cast<seconds>(since_epoch);
    timespec absolute{};
    absolute.tv_sec = static_cast<time_t>(secs.count());
    absolute.tv_nsec = static_cast<long>(duration_cast<nanoseconds>(since_epoch - secs).count());
    const long rc = ::syscall(SYS_futex, const_cast<futex_word*>(&word), FUTEX_WAIT_BITSET, expected, &absolute,
                              nullptr, FUTEX_BITSET_MATCH_ANY);
    return !(rc == -1 && errno == ETIMEDOUT);
}

inline void futex_wake(const futex_word& word, int count = INT_MAX) noexcept {
    ::syscall(SYS_futex, const_cast<futex_word*>(&word), FUTEX_WAKE, count, nullptr, nullptr, 0);
}

/// Turns "any duration" into a steady deadline without overflowing on huge timeouts.
template <class Rep, class Period>
steady_deadline deadline_after(std::chrono::duration<Rep, Period> timeout) noexcept {
    using namespace std::chrono;
    const auto now = steady_clock::now();
    if (timeout <= duration<Rep, Period>::zero()) return now;
    const auto limit = duration_cast<duration<double>>(steady_clock::time_point::max() - now);
    if (duration_cast<duration<double>>(timeout) >= limit) return steady_clock::time_point::max();
    return now + duration_cast<steady_clock::duration>(timeout);
}

/// How long to spin before sleeping: enough to catch a peer that answers within
/// a few microseconds, short enough that two sides sharing one core lose little.
/// (Measured on a loaded 2-core VM: spinning 8x longer made an apply round trip
/// 5x slower, as spinners starve the very process they wait for.)
inline constexpr int spin_budget = 256;

/// Spins up to `spins` pause instructions watching for `ready()`; true as soon as
/// it holds. The first phase of every mpp wait, before it sleeps on a futex.
template <class Ready>
bool spin_then_check(Ready&& ready, int spins = spin_budget) noexcept {
    for (int i = 0; i < spins; ++i) {
        if (ready()) return true;
        cpu_relax();
    }
    return ready();
}

}  // namespace mpp::detail
