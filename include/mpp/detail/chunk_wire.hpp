// What travels between the pool and a worker: a chunk of tasks one way, its
// results the other, each a length-prefixed message on the worker's rings.
// A chunk names its runner by function pointer, which stays valid in a forked
// worker because the worker runs the very same program image.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "mpp/errors.hpp"
#include "mpp/serializer.hpp"

namespace mpp::detail {

struct chunk_context;
using chunk_runner = void (*)(chunk_context&);

/// A callable's encoding, sent with every chunk. A function pointer's bytes (the
/// common case) are kept inline; only encodable function objects allocate.
class callable_bytes {
public:
    callable_bytes() = default;
    explicit callable_bytes(std::span<const std::byte> bytes) : size_(bytes.size()) {
        if (bytes.size() <= inline_.size())
            std::copy(bytes.begin(), bytes.end(), inline_.begin());
        else
            heap_.assign(bytes.begin(), bytes.end());
    }
    std::span<const std::byte> bytes() const noexcept {
        return size_ <= inline_.size() ? std::span<const std::byte>(inline_.data(), size_) : std::span<const std::byte>(heap_);
    }

private:
    std::array<std::byte, 16> inline_{};
    std::size_t size_ = 0;
    std::vector<std::byte> heap_;
};

/// Written by a worker, read by the pool thread: which task of which chunk runs
/// now, so a death or a timeout is pinned on exactly one task.
struct worker_progress {
    std::atomic<std::uint64_t> running_seq{0};     // chunk being run (0: none yet)
    std::atomic<std::uint32_t> tasks_done{0};      // tasks of that chunk already finished
    std::atomic<std::int64_t> task_started_ns{0};  // steady-clock start of the running task, 0 when idle
    std::atomic<std::int32_t> cpu{-1};             // the CPU it last looked for a task on (-1: unknown)
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
    // The CPU of a caller waiting for this chunk's result itself, -1 if none. A
    // worker on that same CPU moves off it after the chunk, or, if it may not,
    // waits for its next chunk without spinning (worker_loop.hpp).
    std::int32_t watcher_cpu = -1;
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

/// Bytes every encoding of T takes under Serializer S when that never varies
/// (flat types, and pairs, tuples and arrays of fixed-size types); 0 otherwise.
/// Items of a fixed size need no length framing and results of a fixed size
/// travel densely, so starmap's pairs cost little more than map's ints.
template <class S, class T>
constexpr std::size_t fixed_encoded_size();

template <class S, class T>
struct fixed_size_of {
    static constexpr std::size_t value = 0;
};
template <class S, class A, class B>
struct fixed_size_of<S, std::pair<A, B>> {
    static constexpr std::size_t value = fixed_encoded_size<S, A>() != 0 && fixed_encoded_size<S, B>() != 0
                                             ? fixed_encoded_size<S, A>() + fixed_encoded_size<S, B>()
                                             : 0;
};
template <class S, class... Ts>
struct fixed_size_of<S, std::tuple<Ts...>> {
    static constexpr std::size_t value =
        sizeof...(Ts) != 0 && ((fixed_encoded_size<S, Ts>() != 0) && ...) ? (fixed_encoded_size<S, Ts>() + ... + 0) : 0;
};
template <class S, class U, std::size_t N>
struct fixed_size_of<S, std::array<U, N>> {
    static constexpr std::size_t value = N * fixed_encoded_size<S, U>();
};

template <class S, class T>
constexpr std::size_t fixed_encoded_size() {
    if constexpr (flat_encoded<S, T>())
        return sizeof(T);
    else if constexpr (!std::same_as<S, binary_serializer> || std::is_void_v<T> || has_codec<T> || has_serialize<T>)
        return 0;
    else
        return fixed_size_of<S, T>::value;
}

/// Writes the fixed_encoded_size<S, T>() bytes of value's encoding at `out`,
/// byte for byte what the Serializer would write, without a writer's bookkeeping.
template <class S, class T>
void store_fixed(std::byte* out, const T& value) noexcept {
    if constexpr (flat_encoded<S, T>()) {
        std::memcpy(out, static_cast<const void*>(&value), sizeof(T));
    } else if constexpr (fixed_size_of<S, T>::value == 0) {
        static_assert(fixed_size_of<S, T>::value != 0, "store_fixed needs a fixed-size type");
    } else {
        std::apply(
            [&](const auto&... parts) {
                ((store_fixed<S>(out, parts), out += fixed_encoded_size<S, std::remove_cvref_t<decltype(parts)>>()), ...);
            },
            value);
    }
}

/// True when store_fixed writes exactly T's own bytes: flat types, and pairs and
/// arrays of such types without padding (not tuples: libstdc++ lays them out
/// backwards). A contiguous run of them encodes with one memcpy.
template <class S, class T>
struct stored_as_is : std::bool_constant<flat_encoded<S, T>()> {};
template <class S, class A, class B>
struct stored_as_is<S, std::pair<A, B>>
    : std::bool_constant<stored_as_is<S, A>::value && stored_as_is<S, B>::value &&
                         std::is_standard_layout_v<std::pair<A, B>> && sizeof(std::pair<A, B>) == sizeof(A) + sizeof(B)> {};
template <class S, class U, std::size_t N>
struct stored_as_is<S, std::array<U, N>>
    : std::bool_constant<stored_as_is<S, U>::value && sizeof(std::array<U, N>) == N * sizeof(U)> {};

template <class S, class T, std::size_t... I>
T load_parts(const std::byte* in, std::index_sequence<I...>);

/// Reads back what store_fixed wrote.
template <class S, class T>
T load_fixed(const std::byte* in) {
    if constexpr (flat_encoded<S, T>()) {
        T value;
        std::memcpy(static_cast<void*>(&value), in, sizeof(T));
        return value;
    } else {
        return load_parts<S, T>(in, std::make_index_sequence<std::tuple_size_v<T>>{});
    }
}

template <class S, class T, std::size_t... I>
T load_parts(const std::byte* in, std::index_sequence<I...>) {
    static constexpr std::array<std::size_t, sizeof...(I)> sizes{fixed_encoded_size<S, std::tuple_element_t<I, T>>()...};
    constexpr auto offset = [](std::size_t index) {
        std::size_t at = 0;
        for (std::size_t k = 0; k < index; ++k) at += sizes[k];
        return at;
    };
    return T{load_fixed<S, std::tuple_element_t<I, T>>(in + offset(I))...};
}

/// How a chunk's results are laid out when the result type has a fixed size:
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
