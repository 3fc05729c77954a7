// A futex word that counts notifications and remembers whether anyone sleeps on it:
// bit 0 says "a waiter sleeps", the other bits count. Notifiers skip the wake syscall unless
// the bit is set (notify_sleepers_after_unlock even the write), and every notification clears
// it, so a waiter that dies asleep costs at most one extra wake and leaves no trace.
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

    /// Call after publishing a change, under a futex-based mutex just unlocked, that waiters
    /// test with the `ready` predicate of wait(). When nobody sleeps this is a plain load on
    /// x86, so a busy queue pays no write to a line its peers read. (Spinners watch their
    /// predicate, not the word, so they need no count.)
    void notify_sleepers_after_unlock() noexcept {
        // Dekker with wait(): we publish, then read the bit; the waiter sets the bit with a
        // CAS, then re-reads its condition; at least one must see the other's write.
#if defined(__x86_64__) || defined(__i386__)
        // Releasing a futex-based mutex is an atomic read-modify-write (it must learn whether
        // anyone waits), and on x86 every one is a full fence, as is the waiter's CAS; an
        // explicit fence here measured 10-15 ns of a 50-75 ns queue put or get.
        std::atomic_signal_fence(std::memory_order_seq_cst);  // only the compiler must not hoist the load
        if (word_.load(std::memory_order_relaxed) & 1u) notify();
#else
        // Elsewhere, a read-modify-write: it reads the latest value of the word, and if it
        // comes first, the waiter's CAS reads from its release sequence and sees our change.
        if (word_.fetch_or(0u, std::memory_order_seq_cst) & 1u) notify();
#endif
    }

    /// Waits until the word differs from `seen` (or spuriously): a bounded spin, then a
    /// futex sleep. Returns false only when `deadline` passed while nothing changed.
    bool wait(std::uint32_t seen, steady_deadline deadline) noexcept {
        return wait(seen, [] { return false; }, deadline);
    }

    /// As above, and also returns once ready() holds: the wait that pairs with
    /// notify_sleepers_after_unlock(). ready() is checked again after the sleep bit is set.
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
        if (ready()) return true;  // after announcing the sleep: see notify_sleepers_after_unlock
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
