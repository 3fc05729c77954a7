// The loop a pool worker runs: read a chunk from its task ring, run it, write
// the results to its result ring, and leave through _exit when told to or when
// its task budget (maxtasksperchild) is spent. It never returns to the caller.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <vector>

#include "mpp/detail/chunk_wire.hpp"
#include "mpp/detail/spsc_ring.hpp"

namespace mpp::detail {

/// One worker's corner of the pool's shared memory.
struct worker_slot {
    worker_progress progress;
    alignas(cache_line) eventcount task_readable;    // the worker sleeps here waiting for tasks
    alignas(cache_line) eventcount result_writable;  // ... and here waiting for result space
    spsc_ring* tasks = nullptr;                      // pool -> worker
    spsc_ring* results = nullptr;                    // worker -> pool
};

[[noreturn]] inline void run_worker(worker_slot& slot, const std::function<void()>& initializer,
                                    std::size_t maxtasksperchild) {
    // An initializer that throws does not kill the worker (which would only be
    // respawned to fail again, forever): every task then fails with its error.
    // The runner writes the failures, since only it knows the chunk's result layout.
    std::exception_ptr initializer_error;
    if (initializer) {
        try {
            initializer();
        } catch (...) {
            initializer_error = std::current_exception();
        }
    }

    std::vector<std::byte> message;
    writer results;
    std::size_t tasks_run = 0;
    for (;;) {
        std::uint64_t message_length = 0;
        slot.tasks->read_all(std::as_writable_bytes(std::span(&message_length, 1)));
        message.resize(static_cast<std::size_t>(message_length));
        slot.tasks->read_all(message);
        slot.tasks->publish_drained();  // our last queued chunk: a napping pool sends more now

        chunk_header header{};
        std::memcpy(&header, message.data(), sizeof header);
        if (header.seq == 0) ::_exit(0);

        slot.progress.tasks_done.store(0, std::memory_order_relaxed);
        slot.progress.running_seq.store(header.seq, std::memory_order_relaxed);
        const std::span<const std::byte> body = std::span<const std::byte>(message).subspan(sizeof header);

        // The message: its length, the result header, then each task's outcome.
        results.clear();
        results.extend(sizeof(std::uint64_t) + sizeof(result_header));
        const std::int64_t started = steady_now_ns();
        {
            chunk_context context{reader(body.first(header.callable_bytes)),
                                  reader(body.subspan(header.callable_bytes)),
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
        slot.results->write_all(results.bytes());

        tasks_run += header.count;
        if (maxtasksperchild != 0 && tasks_run >= maxtasksperchild) ::_exit(0);
    }
}

}  // namespace mpp::detail
