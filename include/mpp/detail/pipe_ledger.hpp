// Per process: how many open Connection handles it has to each pipe end. A fork enrolls
// the child as a holder of every end it inherits (counted as pending from before fork()
// until the child enrolled), and the last handle to go tells the peer that this process
// is done with the end, as closing the last fd of a pipe would.
#pragma once

#include <pthread.h>
#include <unistd.h>

#include <cstddef>
#include <mutex>
#include <unordered_map>

#include "mpp/detail/pipe_peers.hpp"

namespace mpp::detail {

class pipe_ledger {
public:
    static pipe_ledger& instance() {
        static pipe_ledger ledger;
        return ledger;
    }

    /// One more open handle to `end` in this process.
    void acquire(pipe_end_holders& end) {
        std::lock_guard guard(mutex_);
        ++open_handles_[&end];
    }

    /// One fewer; the last one marks this process as done with `end`.
    void release(pipe_end_holders& end) noexcept {
        std::lock_guard guard(mutex_);
        const auto found = open_handles_.find(&end);
        if (found == open_handles_.end()) return;
        if (--found->second == 0) {
            open_handles_.erase(found);
            end.note_closed(pipe_pid_cache::current());
        }
    }

private:
    pipe_ledger() { ::pthread_atfork(&before_fork, &after_fork_in_parent, &after_fork_in_child); }

    // The forking thread holds the mutex across fork(), so the child never inherits it
    // locked by a thread that does not exist there.
    static void before_fork() noexcept {
        auto& ledger = instance();
        ledger.mutex_.lock();
        for (auto& [end, count] : ledger.open_handles_) end->fork_starting();
    }
    static void after_fork_in_parent() noexcept { instance().mutex_.unlock(); }
    static void after_fork_in_child() noexcept {
        auto& ledger = instance();
        const pid_t child = ::getpid();
        for (auto& [end, count] : ledger.open_handles_) end->fork_finished_in_child(child);
        ledger.mutex_.unlock();
    }

    std::mutex mutex_;
    // Keyed by the end's address, which is the same in every process of the tree. An end
    // listed here is alive: the handles counted keep their pipe's shared state.
    std::unordered_map<pipe_end_holders*, std::size_t> open_handles_;
};

}  // namespace mpp::detail
