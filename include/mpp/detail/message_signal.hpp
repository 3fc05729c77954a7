// A futex word that counts notifications and remembers whether anyone sleeps on it:
// bit 0 says "a waiter sleeps", the other bits count. Notifiers skip the wake syscall
// unless the bit is set (notify_sleepers skips even the write), and every notification
// clears it, so a waiter that dies asleep costs at most one extra wake and leaves no trace.
#pragma once

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>

#include "mpp/detail/futex.hpp"

namespace mpp::detail {

class message_signal {
public:
    /// The value to pass to wait(): read it *before* re-checking the condition
    /// (under the lock that guards it), so a notification after the check changes it.
    std::uint32_t observe() const noexcept { return word_.load(std::memory_order_seq_cst); }

    /// Call after publishing a change. A load and a CAS when nobody sleeps.
    void notify() noexcept {
        std::uint32_t old = word_.load(std::memory_order_relaxed);
        // seq_cst CAS: pairs with the waiter's CAS that sets the sleep bit, so either
        // the waiter's futex_wait sees the new value or we see its bit and wake it.
        while (!word_.compare_exchange_weak(old, (old | 1u) + 1u, std::memory_order_seq_cst,
                                            std::memory_order_relaxed)) {
        }
        if (old & 1u) futex_wake(word_, INT_MAX);  // all: the bit is cleared, so nobody else would wake the rest
    }

    /// Call after publishing a change that waiters test with the `ready` predicate of wait():
    /// a fence and a load when nobody sleeps, so a busy queue pays no write to a line its
    /// peers read. (Spinners watch their predicate, not the word, so they need no count.)
    void notify_sleepers() noexcept {
        // Dekker with wait(): we publish, fence, read the bit; the waiter sets the bit, fences,
        // re-reads its condition. At least one of the two sees the other's write.
        std::atomic_thread_fence(std::memory_order_seq_cst);
        if (word_.load(std::memory_order_relaxed) & 1u) notify();
    }

    /// notify_sleepers() for a caller that published under a futex-based mutex it has just
    /// unlocked. Releasing such a mutex is an atomic read-modify-write (it must learn whether
    /// anyone waits), and on x86 every one is a full fence, so the fence above would be a
    /// second one: measured at 10-15 ns of a 50-75 ns queue put or get. Elsewhere, the fence.
    void notify_sleepers_after_unlock() noexcept {
#if defined(__x86_64__) || defined(__i386__)
        std::atomic_signal_fence(std::memory_order_seq_cst);  // the compiler must not hoist the load
        if (word_.load(std::memory_order_relaxed) & 1u) notify();
#else
        notify_sleepers();
#endif
    }

    /// Waits until the word differs from `seen` (or spuriously): a bounded spin, then a
    /// futex sleep. Returns false only when `deadline` passed while nothing changed.
    bool wait(std::uint32_t seen, steady_deadline deadline) noexcept {
        return wait(seen, [] { return false; }, deadline);
    }

    /// As above, and also returns once ready() holds: the wait that notify_sleepers() pairs
    /// with. ready() is checked again after the sleep bit is set, before sleeping.
    template <class Ready>
    bool wait(std::uint32_t seen, Ready&& ready, steady_deadline deadline) noexcept {
        // The spin adapts per thread: it pays when the other side runs on another core and
        // answers within a microsecond or two, and only burns the time slice the other side
        // needs when both share a core (measured on a loaded 2-core box: a fixed 2000-pause
        // spin turned a 9 us futex round trip into 100 us). Failures halve the allowance;
        // every 16th wait probes with a longer spin, so a peer that runs again is noticed.
        spin_state& spin = thread_spin_state();
        int limit = spin.allowance;
        if ((++spin.waits & 15u) == 0) limit = std::max(limit, probe_spin);
        for (int i = 0; i < limit; ++i) {
            if (word_.load(std::memory_order_relaxed) != seen || ready()) {
                spin.allowance = std::min(spin_budget, std::max(spin.allowance, 2 * i + 64));
                return true;
            }
            cpu_relax();
        }
        spin.allowance /= 2;
        std::uint32_t expected = seen;
        if ((seen & 1u) == 0 &&
            !word_.compare_exchange_strong(expected, seen | 1u, std::memory_order_seq_cst, std::memory_order_relaxed)) {
            return true;  // changed before we could announce the sleep
        }
        std::atomic_thread_fence(std::memory_order_seq_cst);  // the bit before the re-check: see notify_sleepers
        if (ready()) return true;
        if (deadline == steady_deadline::max()) {
            futex_wait(word_, seen | 1u);
            return true;
        }
        if (futex_wait_until(word_, seen | 1u, deadline)) return true;
        return word_.load(std::memory_order_relaxed) != (seen | 1u);
    }

private:
    static constexpr int probe_spin = 512;
    struct spin_state {
        int allowance = spin_budget;
        unsigned waits = 0;
    };
    static spin_state& thread_spin_state() noexcept {
        thread_local spin_state state;
        return state;
    }

    futex_word word_{0};
};

}  // namespace mpp::detail
