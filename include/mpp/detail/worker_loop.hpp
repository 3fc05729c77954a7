// The loop a pool worker runs: read a chunk from its task ring, run it, write
// the results to its result ring, and leave through _exit when told to or when
// its task budget (maxtasksperchild) is spent. It never returns to the caller.
#pragma once

#include <unistd.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <span>
#include <utility>
#include <vector>

#include "mpp/detail/bulk_memory.hpp"
#include "mpp/detail/chunk_wire.hpp"
#include "mpp/detail/cpu_placement.hpp"
#include "mpp/detail/spsc_ring.hpp"
#include "mpp/detail/staging.hpp"

namespace mpp::detail {

/// One worker's corner of the pool's shared memory.
struct worker_slot {
    worker_progress progress;
    alignas(cache_line) eventcount task_readable;    // the worker sleeps here waiting for tasks
    alignas(cache_line) eventcount result_writable;  // ... and here waiting for result space
    spsc_ring* tasks = nullptr;                      // pool -> worker
    spsc_ring* results = nullptr;                    // worker -> pool
    // Large results are encoded here and decoded in place (staging.hpp). The
    // worker sets result_staged when it sends one; the pool clears it once decoded.
    std::span<std::byte> result_staging;
    alignas(cache_line) std::atomic<std::uint32_t> result_staged{0};

    /// Ready for a worker in place of a dead one. The caller that handed that one
    /// a task may still be peeking at the result ring (pool_core::watch), so the
    /// slot is not rebuilt: atomic stores only, and the rings stay where they are.
    /// The events keep counting: a waiter that died asleep costs one spare wake.
    void reset() noexcept {
        progress.running_seq.store(0, std::memory_order_relaxed);
        progress.tasks_done.store(0, std::memory_order_relaxed);
        progress.task_started_ns.store(0, std::memory_order_relaxed);
        progress.cpu.store(-1, std::memory_order_relaxed);
        tasks->reset();
        results->reset();
        result_staged.store(0, std::memory_order_relaxed);
    }
};

/// A task that returns a large value (a 64 MiB string, say) would otherwise get
/// a fresh mmap from glibc for every result, faulted in 4 KiB at a time and
/// unmapped when it is freed. Workers keep such blocks on the heap instead, and
/// keep up to 128 MiB of freed heap top, so the next large result reuses pages
/// already faulted in. Set before the initializer, which may choose otherwise.
inline void keep_large_blocks_warm() noexcept {
#if defined(__GLIBC__)
    ::mallopt(M_MMAP_MAX, 0);
    ::mallopt(M_TRIM_THRESHOLD, 128 << 20);
#endif
}

[[noreturn]] inline void run_worker(worker_slot& slot, const std::function<void()>& initializer,
                                    std::size_t maxtasksperchild) {
    // An initializer that throws does not kill the worker (which would only be
    // respawned to fail again, forever): every task then fails with its error.
    // The runner writes the failures, since only it knows the chunk's result layout.
    keep_large_blocks_warm();
    std::exception_ptr initializer_error;
    if (initializer) {
        try {
            initializer();
        } catch (...) {
            initializer_error = std::current_exception();
        }
    }

    byte_buffer message;  // kept: a stream of large messages reuses memory already faulted in
    writer results;
    std::size_t tasks_run = 0;
    int spins = spin_budget;
    for (;;) {
        // Where we wait: a caller handing one task to a worker itself prefers one
        // that does not share its CPU (pool_core::submit_and_watch).
        slot.progress.cpu.store(current_cpu(), std::memory_order_relaxed);
        std::uint64_t message_length = 0;
        slot.tasks->read_all(std::as_writable_bytes(std::span(&message_length, 1)), steady_deadline::max(), spins);
        message.reset(static_cast<std::size_t>(message_length));
        slot.tasks->read_all(message);
        slot.tasks->publish_drained();  // our last queued chunk: a napping pool sends more now

        chunk_header header{};
        std::memcpy(&header, message.data(), sizeof header);
        if (header.seq == 0) ::_exit(0);

        slot.progress.tasks_done.store(0, std::memory_order_relaxed);
        slot.progress.running_seq.store(header.seq, std::memory_order_relaxed);
        const std::span<const std::byte> body = std::span<const std::byte>(std::as_const(message)).subspan(sizeof header);
        const std::span<const std::byte> items =
            header.staged_items != nullptr
                ? std::span<const std::byte>(header.staged_items, static_cast<std::size_t>(header.staged_item_bytes))
                : body.subspan(header.callable_bytes);

        // The message: its length, the result header, then each task's outcome.
        // Encoded in the staging area while the pool is done with it, so a large
        // one need not be copied again; a small one is copied into the ring.
        // acquire: the pool has finished decoding the staged bytes we may now overwrite.
        results.clear();
        writer_storage::use_owned(results);
        if (!slot.result_staging.empty() && slot.result_staged.load(std::memory_order_acquire) == 0)
            writer_storage::use_fixed(results, slot.result_staging);
        results.extend(sizeof(std::uint64_t) + sizeof(result_header));
        const std::int64_t started = steady_now_ns();
        {
            chunk_context context{reader(body.first(header.callable_bytes)),
                                  reader(items),
                                  header.count,
                                  results,
                                  slot.progress,
                                  header.track_time != 0,
                                  initializer_error};
            header.runner(context);
        }
        slot.progress.tasks_done.store(header.count, std::memory_order_relaxed);
        slot.progress.task_started_ns.store(0, std::memory_order_relaxed);

        const result_header done{header.seq, header.count, 0, static_cast<std::uint64_t>(steady_now_ns() - started)};
        const std::uint64_t length = results.size() - sizeof length;
        auto* message_start = const_cast<std::byte*>(results.bytes().data());  // our own buffer
        std::memcpy(message_start, &length, sizeof length);
        std::memcpy(message_start + sizeof length, &done, sizeof done);
        if (writer_storage::in_fixed(results) && results.size() >= staging_threshold) {
            // The ring's release of the word publishes the staged bytes to the pool.
            slot.result_staged.store(1, std::memory_order_relaxed);
            const std::uint64_t word = length | staged_message_bit;
            slot.results->write_all(std::as_bytes(std::span(&word, 1)));
        } else {
            slot.results->write_all(results.bytes());
        }

        // A caller waits for this result on our own CPU (it yields to us meanwhile):
        // move to another CPU, so that its next call finds us there spinning; where
        // we may not, wait for the next task without spinning, so that it can run.
        const bool caller_here = header.watcher_cpu >= 0 && header.watcher_cpu == current_cpu();
        spins = caller_here && !step_off_cpu(header.watcher_cpu) ? 0 : spin_budget;
        tasks_run += header.count;
        if (maxtasksperchild != 0 && tasks_run >= maxtasksperchild) ::_exit(0);
    }
}

}  // namespace mpp::detail
