// basic_pool<Serializer> (and Pool = basic_pool<>): Python's multiprocessing.Pool.
// Workers are forked at construction and fed through shared-memory rings; a
// worker that dies costs only the task it was running, and the destructor
// (close + join) never drops submitted work silently.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <ranges>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mpp/async_result.hpp"
#include "mpp/detail/block_cache.hpp"
#include "mpp/detail/imap_view.hpp"
#include "mpp/detail/pool_core.hpp"
#include "mpp/detail/pool_jobs.hpp"
#include "mpp/detail/task_runners.hpp"
#include "mpp/errors.hpp"
#include "mpp/pool_options.hpp"
#include "mpp/process.hpp"
#include "mpp/serializer.hpp"

namespace mpp {

namespace detail {

template <class T>
struct is_tuple_like : std::false_type {};
template <class... Ts>
struct is_tuple_like<std::tuple<Ts...>> : std::true_type {};
template <class A, class B>
struct is_tuple_like<std::pair<A, B>> : std::true_type {};
template <class T, std::size_t N>
struct is_tuple_like<std::array<T, N>> : std::true_type {};

template <class F, class S>
constexpr void check_shippable() {
    static_assert(shippable<F, S>,
                  "mpp: this callable cannot be sent to a worker process. Use a function pointer, a captureless "
                  "lambda, or a function object the Serializer can encode; pass captured state as arguments instead "
                  "(std::function and lambdas capturing non-trivial state cannot travel).");
}

}  // namespace detail

template <class Serializer = binary_serializer>
class basic_pool {
    static_assert(serializer_type<Serializer>,
                  "mpp::basic_pool<S>: S needs `template <class T> static void save(mpp::writer&, const T&)` and "
                  "`template <class T> static T load(mpp::reader&)`");

    template <class F, class... Args>
    using apply_result = std::remove_cvref_t<std::invoke_result_t<F, std::decay_t<Args>...>>;
    template <class F, class In>
    using map_result = std::remove_cvref_t<std::invoke_result_t<F, std::ranges::range_value_t<In>>>;
    template <class F, class In>
    using starmap_result = std::remove_cvref_t<
        detail::call_result_t<F, std::ranges::range_value_t<In>, detail::call_spread>>;

public:
    /// cpu_count() workers.
    basic_pool() : basic_pool(PoolOptions{}) {}
    explicit basic_pool(std::size_t processes) : basic_pool(options_with(processes)) {}
    explicit basic_pool(PoolOptions options) {
        const std::size_t processes = options.processes == 0 ? cpu_count() : options.processes;
        core_ = std::make_shared<detail::pool_core>(std::move(options), processes);
    }

    /// close() + join(): submitted work always finishes.
    ~basic_pool() {
        try {
            close();
            join();
        } catch (...) {
            // join() from inside a callback cannot wait for its own thread; the core
            // terminates in its destructor instead.
        }
    }
    basic_pool(const basic_pool&) = delete;
    basic_pool& operator=(const basic_pool&) = delete;

    /// f(args...) in a worker; blocks for the result.
    template <class F, class... Args>
    apply_result<F, Args...> apply(F f, Args&&... args) {
        return submit_task(/*caller_waits=*/true, std::move(f), std::forward<Args>(args)...).get();
    }

    /// f(args...) in a worker; the arguments are copied (encoded) now.
    template <class F, class... Args>
    AsyncResult<apply_result<F, Args...>> apply_async(F f, Args&&... args) {
        return submit_task(/*caller_waits=*/false, std::move(f), std::forward<Args>(args)...);
    }

    /// [f(x) for x in xs], computed in parallel; blocks. Throws the first failed task's exception.
    template <class F, std::ranges::input_range In>
    auto map(F f, In&& xs, std::size_t chunksize = 0) {
        static_assert(!std::is_void_v<map_result<F, In>>,
                      "mpp::Pool::map: the function returns void, so there is nothing to collect; use apply_async "
                      "per item, or return a value");
        if constexpr (!std::is_void_v<map_result<F, In>>)
            return map_async(std::move(f), std::forward<In>(xs), chunksize).get();
    }

    /// As map, without blocking: an AsyncResult<std::vector<R>>.
    template <class F, std::ranges::input_range In>
    auto map_async(F f, In&& xs, std::size_t chunksize = 0) {
        static_assert(!std::is_void_v<map_result<F, In>>,
                      "mpp::Pool::map: the function returns void, so there is nothing to collect; use apply_async "
                      "per item, or return a value");
        if constexpr (!std::is_void_v<map_result<F, In>>)
            return submit_all<map_result<F, In>, detail::call_one>(std::move(f), std::forward<In>(xs), chunksize, "map");
    }

    /// map for functions of several arguments: each element is a tuple, pair or array.
    template <class F, std::ranges::input_range In>
    auto starmap(F f, In&& tuples, std::size_t chunksize = 0) {
        auto result = starmap_async(std::move(f), std::forward<In>(tuples), chunksize);
        return result.get();
    }

    /// As starmap, without blocking: an AsyncResult<std::vector<R>>.
    template <class F, std::ranges::input_range In>
    auto starmap_async(F f, In&& tuples, std::size_t chunksize = 0) {
        static_assert(detail::is_tuple_like<std::ranges::range_value_t<In>>::value,
                      "mpp::Pool::starmap: the elements must be std::tuple, std::pair or std::array");
        static_assert(!std::is_void_v<starmap_result<F, In>>,
                      "mpp::Pool::starmap: the function returns void, so there is nothing to collect");
        if constexpr (!std::is_void_v<starmap_result<F, In>> && detail::is_tuple_like<std::ranges::range_value_t<In>>::value)
            return submit_all<starmap_result<F, In>, detail::call_spread>(std::move(f), std::forward<In>(tuples),
                                                                           chunksize, "starmap");
    }

    /// Lazy, ordered: a view yielding f(x) in input order, reading xs as it goes.
    template <class F, std::ranges::input_range In>
    auto imap(F f, In&& xs, std::size_t chunksize = 1) {
        return make_stream(std::move(f), std::forward<In>(xs), chunksize, /*ordered=*/true, "imap");
    }

    /// Lazy, unordered: a view yielding f(x) as results arrive.
    template <class F, std::ranges::input_range In>
    auto imap_unordered(F f, In&& xs, std::size_t chunksize = 1) {
        return make_stream(std::move(f), std::forward<In>(xs), chunksize, /*ordered=*/false, "imap_unordered");
    }

    /// No new work; the workers exit once the queued work is done. Idempotent.
    void close() { core_->close(); }
    /// Waits for the workers to exit; std::logic_error before close() or terminate(). Idempotent.
    void join() { core_->join(); }
    /// Stops now: every unfinished result fails with PoolTerminated.
    void terminate() { core_->terminate(); }

    std::size_t size() const noexcept { return core_->size(); }
    /// The current worker pids (a replaced worker's successor included): always size() entries.
    /// Right after construction it waits until the fork server has forked them.
    std::vector<pid_t> pids() const { return core_->pids(); }

private:
    /// One task as its own job. A caller that waits for it (apply) may hand it to an
    /// idle worker and collect the result itself (pool_core::submit_and_watch).
    template <class F, class... Args>
    AsyncResult<apply_result<F, Args...>> submit_task(bool caller_waits, F f, Args&&... args) {
        detail::check_shippable<F, Serializer>();
        using R = apply_result<F, Args...>;
        using packed = std::tuple<std::decay_t<Args>...>;
        using job_type = detail::single_job<Serializer, R>;
        auto job = std::allocate_shared<job_type>(detail::recycling_allocator<job_type>(core_->job_memory()),
                                                  &detail::run_chunk<Serializer, F, packed, detail::call_spread>,
                                                  detail::encode_callable<Serializer>(f), item_stride<packed>());
        auto state = job_type::shared_state(job);
        if constexpr (item_stride<packed>() != 0 && item_stride<packed>() <= job_type::inline_argument_bytes) {
            // Plain values: encoded straight into the job, no buffer of their own.
            detail::store_fixed<Serializer>(job->inline_argument(), packed(std::forward<Args>(args)...));
            job->add_inline_argument(item_stride<packed>());
        } else {
            detail::item_block_writer items(item_stride<packed>());
            items.begin_item();
            std::shared_ptr<detail::staging_memory::lease> staged;
            if constexpr (std::same_as<Serializer, binary_serializer> && (serializable<std::decay_t<Args>> && ...)) {
                // A tuple's binary encoding is its elements back to back: encode the
                // arguments where they are instead of copying them into a tuple first,
                // into a buffer sized once (a 64 MiB argument is copied once, not thrice).
                std::size_t size = 16;
                ((size = detail::saturating_add(size, detail::binary_size_hint(static_cast<const std::decay_t<Args>&>(args)))), ...);
                // A large one goes straight into shared memory, where the worker decodes it.
                if (size != detail::unknown_size && size >= detail::staging_threshold)
                    staged = core_->staging().allocate(size);
                if (staged) detail::writer_storage::use_fixed(items.out(), staged->bytes());
                if (size != detail::unknown_size) items.out().reserve(size);
                (save_with<Serializer>(items.out(), static_cast<const std::decay_t<Args>&>(args)), ...);
            } else {
                save_with<Serializer>(items.out(), packed(std::forward<Args>(args)...));
            }
            items.end_item();
            add_block(*job, std::move(items), std::move(staged), 1);
        }
        if (caller_waits)
            core_->submit_and_watch(std::move(job), "apply");  // returns once done, or handed to the pool thread
        else
            core_->submit(std::move(job), "apply_async");
        return AsyncResult<R>(std::move(state));
    }

    static PoolOptions options_with(std::size_t processes) {
        PoolOptions options;
        options.processes = processes;
        return options;
    }

    /// Bytes per item when items of type T have a fixed size (they travel unframed), else 0.
    template <class T>
    static constexpr std::size_t item_stride() {
        return detail::fixed_encoded_size<Serializer, T>();
    }

    /// Encodes every element of xs into `items` (one memcpy for a contiguous range of flat items).
    template <class In>
    static void encode_items(detail::item_block_writer& items, In& xs) {
        using value = std::ranges::range_value_t<In>;
        if constexpr (detail::stored_as_is<Serializer, value>::value && std::ranges::contiguous_range<In> &&
                      std::same_as<std::remove_cv_t<std::ranges::range_value_t<In>>, value>) {
            items.append_flat(std::ranges::data(xs), static_cast<std::size_t>(std::ranges::size(xs)));
        } else if constexpr (item_stride<value>() != 0 && std::ranges::sized_range<In>) {
            std::byte* out = items.append_fixed(static_cast<std::size_t>(std::ranges::size(xs)));
            for (auto&& x : xs) {
                detail::store_fixed<Serializer>(out, static_cast<const value&>(x));
                out += item_stride<value>();
            }
        } else {
            if constexpr (std::ranges::sized_range<In>)
                items.out().reserve(static_cast<std::size_t>(std::ranges::size(xs)) *
                                    (item_stride<value>() != 0 ? item_stride<value>() : sizeof(value) + 8));
            for (auto&& x : xs) {
                items.begin_item();
                save_with<Serializer>(items.out(), static_cast<const value&>(x));
                items.end_item();
            }
        }
    }

    /// Hands a job its whole input: where it was encoded (a staging lease), or the
    /// writer's own buffer when there was no lease or the items outgrew it.
    static void add_block(detail::job_base& job, detail::item_block_writer items,
                          std::shared_ptr<detail::staging_memory::lease> staged, std::size_t count) {
        if (staged && detail::writer_storage::in_fixed(items.out())) {
            const std::span<const std::byte> bytes = items.out().bytes();
            job.add_items(std::move(staged), bytes, count, true);
        } else {
            job.add_items(std::move(items).take(), count, true);
        }
    }

    /// map / starmap: every item is encoded now (the input may go away after the call).
    template <class R, class Call, class F, class In>
    AsyncResult<std::vector<R>> submit_all(F f, In&& xs, std::size_t chunksize, const char* caller) {
        detail::check_shippable<F, Serializer>();
        using value = std::ranges::range_value_t<In>;
        constexpr std::size_t stride = item_stride<value>();
        detail::item_block_writer items(stride);
        std::shared_ptr<detail::staging_memory::lease> staged;
        if constexpr (stride != 0 && std::ranges::sized_range<In>) {
            // Many fixed-size items go straight into shared memory, where the workers
            // read them: no fresh block to fault in per call, no copy into the rings.
            const std::size_t bytes = static_cast<std::size_t>(std::ranges::size(xs)) * stride;
            if (bytes >= detail::staging_threshold) staged = core_->staging().allocate(bytes);
            if (staged) detail::writer_storage::use_fixed(items.out(), staged->bytes());
        }
        encode_items(items, xs);
        const std::size_t count = items.count();
        auto state = std::make_shared<detail::result_state<std::vector<R>>>();
        auto job = std::make_shared<detail::collect_job<Serializer, R>>(
            &detail::run_chunk<Serializer, F, value, Call>, detail::encode_callable<Serializer>(f),
            detail::chunk_plan(chunksize, core_->size()), stride, count, state);
        add_block(*job, std::move(items), std::move(staged), count);
        core_->submit(std::move(job), caller);
        return AsyncResult<std::vector<R>>(std::move(state));
    }

    template <class F, class In>
    auto make_stream(F f, In&& xs, std::size_t chunksize, bool ordered, const char* caller) {
        detail::check_shippable<F, Serializer>();
        using R = map_result<F, In>;
        static_assert(!std::is_void_v<R>, "mpp::Pool::imap: the function returns void, so there is nothing to yield");
        using value = std::ranges::range_value_t<In>;
        auto job = std::make_shared<detail::stream_job<Serializer, R>>(
            &detail::run_chunk<Serializer, F, value, detail::call_one>, detail::encode_callable<Serializer>(f),
            detail::chunk_plan(chunksize, core_->size()), item_stride<value>(), ordered);
        core_->submit(job, caller);
        const std::size_t window = std::max<std::size_t>(256, 8 * core_->size() * chunksize);  // items in flight
        return detail::imap_view<Serializer, R, In>(core_, std::move(job), std::forward<In>(xs), window);
    }

    std::shared_ptr<detail::pool_core> core_;
};

using Pool = basic_pool<>;

}  // namespace mpp
