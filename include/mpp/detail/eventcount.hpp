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
    /// Waiter, step 1: announce the sleep (the low bit of the word), then re-check
    /// the condition.
    std::uint32_t prepare_wait() noexcept {
        // seq_cst RMW: ordered before the condition re-check that follows, so a
        // notifier that published before it is either seen by that re-check or
        // sees the waiting bit (Dekker's pattern with notify()'s fence).
        return signal_.fetch_or(waiting_bit, std::memory_order_seq_cst) | waiting_bit;
    }

    /// Waiter, step 2a: the condition already holds. The bit stays set; the next
    /// notify clears it at the cost of one wake.
    void cancel_wait() noexcept {}

    /// Waiter, step 2b: sleep until notified (or spuriously, or the deadline).
    /// Returns false when the deadline passed.
    bool commit_wait(std::uint32_t ticket, steady_deadline deadline = steady_deadline::max()) noexcept {
        if (deadline == steady_deadline::max()) {
            futex_wait(signal_, ticket);
            return true;
        }
        return futex_wait_until(signal_, ticket, deadline);
    }

    /// Notifier: call after publishing the change. Costs a fence and a load when
    /// nobody waits; only the first notifier after a waiter arrived pays the syscall.
    void notify() noexcept {
        std::atomic_thread_fence(std::memory_order_seq_cst);
        std::uint32_t word = signal_.load(std::memory_order_relaxed);
        if ((word & waiting_bit) == 0) return;
        if (signal_.compare_exchange_strong(word, (word + 2) & ~waiting_bit, std::memory_order_seq_cst))
            futex_wake(signal_, INT_MAX);
    }

private:
    static constexpr std::uint32_t waiting_bit = 1;
    futex_word signal_{0};  // a change counter in steps of 2, plus the waiting bit
};

/// Waits until `ready()` holds or the deadline passes: a bounded spin, then
/// sleeps on `event`, calling `announce()` before each sleep (to ask the other
/// side for a wake; a notifier may consume that request as soon as it is made).
/// Returns ready()'s final value.
template <class Ready, class Announce>
bool await(eventcount& event, Ready&& ready, Announce&& announce, steady_deadline deadline = steady_deadline::max(),
           int spins = spin_budget) {
    if (spin_then_check(ready, spins)) return true;
    for (;;) {
        // The ticket first, then the request: a notifier that takes the request
        // (and so skips the next one) necessarily moves the word past the ticket,
        // and commit_wait returns at once. The other order lost wakes: a late
        // notify for data we had already consumed took the request between
        // announce() and prepare_wait(), found nobody asleep, and the next notify,
        // for new data, found no request.
        const std::uint32_t ticket = event.prepare_wait();
        announce();
        if (ready()) {
            event.cancel_wait();
            return true;
        }
        if (!event.commit_wait(ticket, deadline)) return ready();
    }
}

}  // namespace mpp::detail
