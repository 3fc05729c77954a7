// JoinableQueue's shared bookkeeping: finished tasks counted against the messages a
// message_queue ever published, so "unfinished" is their difference and a put raises it
// with the very store that publishes (no window in which a dying putter skews it).
#pragma once

#include <atomic>
#include <cstdint>
#include <stdexcept>

#include "mpp/detail/message_queue.hpp"
#include "mpp/detail/message_signal.hpp"

namespace mpp::detail {

class task_counter {
public:
    std::uint64_t unfinished(const message_queue& messages) const noexcept {
        const std::uint64_t finished = finished_.load(std::memory_order_acquire);
        const std::uint64_t published = messages.published();
        return published > finished ? published - finished : 0;
    }

    /// One more task finished; std::logic_error if that is more than were ever put.
    void task_done(const message_queue& messages) {
        std::uint64_t finished = finished_.load(std::memory_order_relaxed);
        for (;;) {
            // published() only grows, so a count checked against it stays valid for the CAS.
            if (finished >= messages.published())
                throw std::logic_error("JoinableQueue::task_done: called more times than there were items put");
            if (finished_.compare_exchange_weak(finished, finished + 1, std::memory_order_acq_rel,
                                                std::memory_order_relaxed))
                break;
        }
        if (finished + 1 >= messages.published()) all_done_.notify();
    }

    /// Blocks until every task put so far has been marked done.
    void join(const message_queue& messages) {
        for (;;) {
            const std::uint32_t seen = all_done_.observe();  // before the check: see message_signal
            if (unfinished(messages) == 0) return;
            all_done_.wait(seen, steady_deadline::max());
        }
    }

private:
    std::atomic<std::uint64_t> finished_{0};
    message_signal all_done_;
};

}  // namespace mpp::detail
