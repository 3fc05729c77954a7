// How a callable and its arguments travel to a worker and run there: the
// `shippable` concept that decides what may be sent, the encoding of callables,
// and the chunk runners (one instantiation per call shape) whose addresses the
// pool puts into each chunk.
#pragma once

#include <cstring>
#include <functional>
#include <optional>
#include <ranges>
#include <tuple>
#include <type_traits>
#include <utility>

#include "mpp/detail/chunk_wire.hpp"
#include "mpp/serializer.hpp"

namespace mpp {

namespace detail {

template <class F>
concept function_pointer = std::is_pointer_v<F> && std::is_function_v<std::remove_pointer_t<F>>;

/// Captureless lambdas and other empty function objects: rebuilt in the worker, nothing sent.
template <class F>
concept stateless_callable =
    std::is_class_v<F> && std::is_empty_v<F> && std::is_default_constructible_v<F> && std::is_trivially_copyable_v<F>;

template <class S, class F>
concept encodable_callable = std::is_class_v<F> && (std::same_as<S, binary_serializer> ? serializable<F> : true) &&
                             requires(writer& out, reader& in, const F& f) {
                                 S::template save<F>(out, f);
                                 { S::template load<F>(in) } -> std::same_as<F>;
                             };

}  // namespace detail

/// What a pool can send to its workers: function pointers (a forked worker runs
/// the same program image), captureless lambdas, and function objects the
/// Serializer can encode (they travel with each chunk).
template <class F, class Serializer = binary_serializer>
concept shippable = detail::function_pointer<F> || detail::stateless_callable<F> ||
                    detail::encodable_callable<Serializer, F>;

namespace detail {

/// The bytes that rebuild f in a worker (no allocation for a function pointer).
template <class S, class F>
callable_bytes encode_callable(const F& f) {
    if constexpr (function_pointer<F>) {
        return callable_bytes(std::as_bytes(std::span(&f, 1)));
    } else if constexpr (stateless_callable<F>) {
        return {};  // Nothing to send: the worker default-constructs it.
    } else {
        writer out;
        save_with<S>(out, f);
        return callable_bytes(out.bytes());
    }
}

template <class S, class F>
F load_callable(reader& in) {
    if constexpr (function_pointer<F>) {
        F f = nullptr;
        std::memcpy(&f, in.read(sizeof f).data(), sizeof f);
        return f;
    } else if constexpr (stateless_callable<F>) {
        return F{};
    } else {
        return load_with<S, F>(in);
    }
}

/// Calls f(arg) (map, imap, apply of one packed tuple goes through call_spread).
struct call_one {
    template <class F, class Arg>
    static decltype(auto) call(F& f, Arg&& arg) {
        return std::invoke(f, std::forward<Arg>(arg));
    }
};

/// Calls f(elements of a tuple-like arg...) (starmap, apply).
struct call_spread {
    template <class F, class Arg>
    static decltype(auto) call(F& f, Arg&& arg) {
        return std::apply(f, std::forward<Arg>(arg));
    }
};

template <class F, class Arg, class Call>
using call_result_t = decltype(Call::call(std::declval<F&>(), std::declval<Arg&&>()));

/// Runs a chunk in the worker: decode the callable once, then each item, call,
/// encode each result (or the exception it threw). Items of a fixed size are
/// read straight from the message (one memcpy each when flat); results of a
/// fixed size are written densely until a task fails.
template <class S, class F, class Arg, class Call>
void run_chunk(chunk_context& context) {
    using result = std::remove_cvref_t<call_result_t<F, Arg, Call>>;
    constexpr std::size_t item_bytes = fixed_encoded_size<S, Arg>();
    constexpr std::size_t result_bytes = fixed_encoded_size<S, result>();

    std::optional<F> callable;
    const std::byte* fixed_item_bytes = nullptr;
    try {
        if (context.setup_error) std::rethrow_exception(context.setup_error);
        callable.emplace(load_callable<S, F>(context.callable));
        if constexpr (item_bytes != 0) fixed_item_bytes = context.items.read(context.count * item_bytes).data();
    } catch (...) {
        if constexpr (result_bytes != 0) {
            const auto layout = result_layout::per_task;
            context.results.write(&layout, 1);
        }
        for (std::uint32_t i = 0; i < context.count; ++i) {
            context.begin_task(i);
            save_current_exception(context.results);
        }
        return;
    }

    auto argument = [&](std::uint32_t i) -> Arg {
        if constexpr (item_bytes != 0) {
            return load_fixed<S, Arg>(fixed_item_bytes + std::size_t{i} * item_bytes);
        } else {
            reader item(context.next_item());
            return load_with<S, Arg>(item);
        }
    };

    std::uint32_t i = 0;
    if constexpr (result_bytes != 0) {
        const std::size_t start = context.results.size();
        const auto dense = result_layout::dense;
        context.results.write(&dense, 1);
        std::byte* out = context.results.extend(std::size_t{context.count} * result_bytes);
        for (; i < context.count; ++i) {
            context.begin_task(i);
            try {
                store_fixed<S>(out + std::size_t{i} * result_bytes, static_cast<const result&>(Call::call(*callable, argument(i))));
            } catch (...) {
                // Task i failed: rewrite what is done in the per-task layout, then go on in it.
                const std::vector<std::byte> done(out, out + std::size_t{i} * result_bytes);
                context.results.truncate(start);
                const auto per_task = result_layout::per_task;
                const auto ok = task_status::ok;
                context.results.write(&per_task, 1);
                for (std::uint32_t j = 0; j < i; ++j) {
                    context.results.write(&ok, 1);
                    context.results.write(done.data() + std::size_t{j} * result_bytes, result_bytes);
                }
                save_current_exception(context.results);
                ++i;
                break;
            }
        }
        if (i == context.count && context.results.size() > start &&
            static_cast<result_layout>(context.results.bytes()[start]) == result_layout::dense)
            return;
    }
    for (; i < context.count; ++i) {
        run_task(context, i, [&](writer& out) {
            if constexpr (std::is_void_v<result>) {
                Call::call(*callable, argument(i));
            } else {
                auto&& value = Call::call(*callable, argument(i));
                if constexpr (std::same_as<S, binary_serializer> && serializable<result>) {
                    // One allocation for a large result instead of a doubling series of copies.
                    const std::size_t size = binary_size_hint(static_cast<const result&>(value));
                    if (size != unknown_size) out.reserve(out.size() + size);
                }
                save_with<S>(out, value);
            }
        });
    }
}

}  // namespace detail
}  // namespace mpp
