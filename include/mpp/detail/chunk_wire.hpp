// What travels between the pool and a worker: a chunk of tasks one way, its
// results the other, each a length-prefixed message on the worker's rings.
// A chunk names its runner by function pointer, which stays valid in a forked
// worker because the worker runs the very same program image.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <string>
#include <type_traits>
#include <typeinfo>

#include "mpp/errors.hpp"
#include "mpp/serializer.hpp"

namespace mpp::detail {

struct chunk_context;
using chunk_runner = void (*)(chunk_context&);

/// Written by a worker, read by the pool thread: which task of which chunk runs
/// now, so a death or a timeout is pinned on exactly one task.
struct worker_progress {
    std::atomic<std::uint64_t> running_seq{0};     // chunk being run (0: none yet)
    std::atomic<std::uint32_t> tasks_done{0};      // tasks of that chunk already finished
    std::atomic<std::int64_t> task_started_ns{0};  // steady-clock start of the running task, 0 when idle
};

/// Precedes every task message. seq 0 asks the worker to exit.
struct chunk_header {
    std::uint64_t seq;
    chunk_runner runner;
    std::uint32_t count;        // tasks in the chunk
    std::uint32_t track_time;   // 1: record each task's start (task_timeout is on)
    std::uint64_t callable_bytes;
    // Items left in the pool's task staging area (staging.hpp), read there by
    // the worker instead of following in the message; null when they follow.
    const std::byte* staged_items = nullptr;
    std::uint64_t staged_item_bytes = 0;
};

/// Set in a message's length word when the message itself waits in the
/// sender's staging area and only this word travels through the ring.
inline constexpr std::uint64_t staged_message_bit = std::uint64_t{1} << 63;

/// Precedes every result message.
struct result_header {
    std::uint64_t seq;
    std::uint32_t count;
    std::uint32_t reserved;
    std::uint64_t elapsed_ns;  // the chunk's run time, for adaptive chunk sizes
};

enum class task_status : std::uint8_t { ok = 0, failed = 1 };

/// True when T travels as its raw bytes under Serializer S (binary_serializer and
/// a bitwise type: int, double, plain structs...). Such items need no framing
/// and such results need no per-task status: a chunk of them is one memcpy.
template <class S, class T>
constexpr bool flat_encoded() {
    if constexpr (std::is_void_v<T>)
        return false;
    else
        return std::same_as<S, binary_serializer> && !has_codec<T> && bitwise<T>();
}

/// How a chunk's results are laid out when the result type is flat_encoded:
/// `dense` = every task succeeded and the values follow back to back;
/// `per_task` = each task's status, then its value or its exception.
enum class result_layout : std::uint8_t { dense = 0, per_task = 1 };

inline std::int64_t steady_now_ns() noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

/// Each item in a chunk is framed by its byte length, so one item that fails to
/// decode fails alone and the next one still starts at the right place.
using item_length = std::uint64_t;

/// What a runner sees in the worker.
struct chunk_context {
    reader callable;
    reader items;
    std::uint32_t count;
    writer& results;
    worker_progress& progress;
    bool track_time;
    std::exception_ptr setup_error = nullptr;  // the initializer's exception: every task fails with it

    /// The bytes of the next length-framed item.
    std::span<const std::byte> next_item() {
        item_length length = 0;
        std::memcpy(&length, items.read(sizeof length).data(), sizeof length);
        return items.read(static_cast<std::size_t>(length));
    }

    void begin_task(std::uint32_t index) noexcept {
        progress.tasks_done.store(index, std::memory_order_relaxed);
        if (track_time) progress.task_started_ns.store(steady_now_ns(), std::memory_order_relaxed);
    }
};

/// Encodes the exception in flight as (mangled type name, what()).
inline void save_current_exception(writer& out) {
    std::string type_name = "unknown exception";
    std::string what = "a task threw something that is not a std::exception";
    try {
        throw;
    } catch (const std::exception& error) {
        type_name = typeid(error).name();
        what = error.what();
    } catch (...) {
    }
    const auto status = task_status::failed;
    out.write(&status, 1);
    binary_serializer::save(out, type_name);
    binary_serializer::save(out, what);
}

/// The exception a failed task's bytes describe, rebuilt as its own type when the parent knows it.
inline std::exception_ptr load_exception(reader& in) {
    auto type_name = binary_serializer::load<std::string>(in);
    auto what = binary_serializer::load<std::string>(in);
    return exception_registry::instance().rebuild(type_name, what);
}

/// Runs one task: `produce(results)` encodes the result after the ok status; any
/// exception (the task's own or an encoding failure) replaces the partial bytes.
template <class Produce>
void run_task(chunk_context& context, std::uint32_t index, Produce&& produce) {
    context.begin_task(index);
    const std::size_t mark = context.results.size();
    try {
        const auto status = task_status::ok;
        context.results.write(&status, 1);
        produce(context.results);
    } catch (...) {
        context.results.truncate(mark);
        save_current_exception(context.results);
    }
}

}  // namespace mpp::detail
