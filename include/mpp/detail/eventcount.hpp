// An eventcount on a futex word: lets one side sleep until "something changed"
// without a lock, and lets the other side skip the wake syscall entirely when
// nobody sleeps. A waiter that dies while asleep only costs later notifiers a
// harmless extra wake.
#pragma once

#include <atomic>
#include <climits>
#include <cstdint>

#include "mpp/detail/futex.hpp"

namespace mpp::detail {

class eventcount {
public:
    /// Waiter, step 1: announce the sleep, then re-check the condition.
    std::uint32_t prepare_wait() noexcept {
        // seq_cst RMW: ordered before the condition re-check that follows, so a
        // notifier that published before it either is seen by that re-check or
        // sees sleepers_ > 0 (Dekker's pattern with notify()'s fence).
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        return signal_.load(std::memory_order_seq_cst);
    }

    /// Waiter, step 2a: the condition already holds.
    void cancel_wait() noexcept { sleepers_.fetch_sub(1, std::memory_order_relaxed); }

    /// Waiter, step 2b: sleep until notified (or spuriously, or the deadline).
    /// Returns false when the deadline passed.
    bool commit_wait(std::uint32_t ticket, steady_deadline deadline = steady_deadline::max()) noexcept {
        bool woken = true;
        if (deadline == steady_deadline::max())
            futex_wait(signal_, ticket);
        else
            woken = futex_wait_until(signal_, ticket, deadline);
        sleepers_.fetch_sub(1, std::memory_order_relaxed);
        return woken;
    }

    /// Notifier: call after publishing the change. Costs a fence and a load when
    /// nobody sleeps.
    void notify() noexcept {
        std::atomic_thread_fence(std::memory_order_seq_cst);
        if (sleepers_.load(std::memory_order_relaxed) != 0) {
            signal_.fetch_add(1, std::memory_order_seq_cst);
            futex_wake(signal_, INT_MAX);
        }
    }

private:
    futex_word signal_{0};
    std::atomic<std::uint32_t> sleepers_{0};
};

/// Waits until `ready()` holds or the deadline passes: a bounded spin, then
/// sleeps on `event`. Returns ready()'s final value.
template <class Ready>
bool await(eventcount& event, Ready&& ready, steady_deadline deadline = steady_deadline::max()) {
    for (int i = 0; i < spin_budget; ++i) {
        if (ready()) return true;
        cpu_relax();
    }
    for (;;) {
        const std::uint32_t ticket = event.prepare_wait();
        if (ready()) {
            event.cancel_wait();
            return true;
        }
        if (!event.commit_wait(ticket, deadline)) return ready();
    }
}

}  // namespace mpp::detail
