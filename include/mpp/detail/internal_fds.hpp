// The file descriptors mpp itself holds open (fork-server sockets and the like).
// A process mpp forks closes the ones that are not its own, so a pool's fork
// server sees its parent vanish even while other mpp children live on.
// Lock-free, so a child may use it right after fork() in a multithreaded parent.
#pragma once

#include <pthread.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <initializer_list>

namespace mpp::detail {

class internal_fds {
public:
    static void add(int fd) noexcept {
        // Every fork (mpp's or the application's own) drops mpp's fds in the
        // child; mpp's forks then keep only what they need explicitly.
        static const bool registered = [] {
            ::pthread_atfork(nullptr, nullptr, [] { close_all_except({}); });
            return true;
        }();
        (void)registered;
        for (auto& slot : slots()) {
            int expected = -1;
            if (slot.compare_exchange_strong(expected, fd, std::memory_order_acq_rel)) return;
        }
        // Table full: the fd simply stays inherited; only liveness detection gets slower.
    }

    static void remove(int fd) noexcept {
        for (auto& slot : slots()) {
            int expected = fd;
            if (slot.compare_exchange_strong(expected, -1, std::memory_order_acq_rel)) return;
        }
    }

    /// In a freshly forked child: closes every internal fd except `keep`.
    static void close_all_except(std::initializer_list<int> keep) noexcept {
        for (auto& slot : slots()) {
            const int fd = slot.load(std::memory_order_acquire);
            if (fd < 0) continue;
            bool kept = false;
            for (int k : keep) kept = kept || k == fd;
            if (!kept) {
                ::close(fd);
                slot.store(-1, std::memory_order_release);
            }
        }
    }

private:
    struct table {
        table() noexcept {
            for (auto& slot : entries) slot.store(-1, std::memory_order_relaxed);
        }
        std::array<std::atomic<int>, 256> entries;
    };
    static std::array<std::atomic<int>, 256>& slots() noexcept {
        static table fds;
        return fds.entries;
    }
};

}  // namespace mpp::detail
