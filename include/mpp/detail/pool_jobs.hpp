// The typed jobs behind each Pool method: collect_job gathers a map's results
// in input order into one AsyncResult, single_job serves apply, stream_job hands
// imap results to a consuming view as they arrive (in order or not).
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <variant>
#include <vector>

#include "mpp/async_result.hpp"
#include "mpp/detail/futex.hpp"
#include "mpp/detail/job.hpp"
#include "mpp/detail/reusable_queue.hpp"

namespace mpp::detail {

/// map / starmap: results land at their input index; the first failure in input
/// order wins, reported once every chunk has finished.
template <class S, class R>
class collect_job final : public job_base {
    // Default-constructible results are written in place; others wait in optionals.
    static constexpr bool in_place = std::is_default_constructible_v<R> && !std::is_same_v<R, bool>;
    using slot = std::conditional_t<in_place, R, std::optional<R>>;

public:
    collect_job(chunk_runner runner, callable_bytes callable, chunk_plan plan, std::size_t item_stride,
                std::size_t total, std::shared_ptr<result_state<std::vector<R>>> state)
        : job_base(runner, std::move(callable), plan, item_stride), values_(total), state_(std::move(state)) {}

    void deliver(std::size_t first, std::uint32_t count, reader& results) override {
        R* dense_out = nullptr;
        if constexpr (in_place) dense_out = values_.data() + first;  // plain results: one memcpy per chunk
        decode_results<S, R>(
            first, count, results,
            [&](std::size_t index, R&& value) {
                if constexpr (in_place)
                    values_[index] = std::move(value);
                else
                    values_[index].emplace(std::move(value));
            },
            dense_out);
    }

    void fail(std::size_t index, std::exception_ptr error) override {
        if (index < first_error_index_) {
            first_error_index_ = index;
            first_error_ = std::move(error);
        }
    }

    void complete() override {
        if (first_error_) return state_->set_exception(first_error_);
        if constexpr (in_place) {
            state_->set_value(std::move(values_));
        } else {
            std::vector<R> values;
            values.reserve(values_.size());
            for (auto& value : values_) values.push_back(std::move(*value));
            state_->set_value(std::move(values));
        }
    }

private:
    std::vector<slot> values_;
    std::size_t first_error_index_ = SIZE_MAX;
    std::exception_ptr first_error_;
    std::shared_ptr<result_state<std::vector<R>>> state_;
};

/// apply / apply_async: one task, one result. The job, the state its AsyncResult
/// shares (an aliasing pointer into the job) and a small argument's bytes live in
/// one allocation, so an apply_async of plain values costs one malloc.
template <class S, class R>
class single_job final : public job_base {
public:
    /// Arguments up to this many encoded bytes are kept inside the job.
    static constexpr std::size_t inline_argument_bytes = 48;

    single_job(chunk_runner runner, callable_bytes callable, std::size_t item_stride)
        : job_base(runner, std::move(callable), chunk_plan(1, 1), item_stride) {}

    /// The state for the AsyncResult: it keeps the whole job alive.
    static std::shared_ptr<result_state<R>> shared_state(const std::shared_ptr<single_job>& job) {
        return std::shared_ptr<result_state<R>>(job, &job->state_);
    }

    /// Room for the encoded argument (at most inline_argument_bytes), then add_inline_argument().
    std::byte* inline_argument() noexcept { return argument_.data(); }
    void add_inline_argument(std::size_t bytes) {
        add_items(nullptr, std::span<const std::byte>(argument_.data(), bytes), 1, true);
    }

    void deliver(std::size_t first, std::uint32_t count, reader& results) override {
        if constexpr (std::is_void_v<R>)
            decode_results<S, R>(first, count, results, [&](std::size_t) { value_.emplace(); });
        else
            decode_results<S, R>(first, count, results, [&](std::size_t, R&& value) { value_.emplace(std::move(value)); });
    }
    void fail(std::size_t, std::exception_ptr error) override { error_ = std::move(error); }
    void complete() override {
        if (error_ || !value_) return state_.set_exception(error_ ? error_ : std::make_exception_ptr(PoolTerminated()));
        state_.set_value(std::move(*value_));
    }

private:
    std::optional<stored_value<R>> value_;
    std::exception_ptr error_;
    result_state<R> state_;
    std::array<std::byte, inline_argument_bytes> argument_{};
};

/// imap / imap_unordered: results wait here until the consuming view takes them.
template <class S, class R>
class stream_job final : public job_base {
public:
    using outcome = std::variant<std::exception_ptr, R>;

    stream_job(chunk_runner runner, callable_bytes callable, chunk_plan plan, std::size_t item_stride,
               bool ordered)
        : job_base(runner, std::move(callable), plan, item_stride), ordered_(ordered) {}

    void deliver(std::size_t first, std::uint32_t count, reader& results) override {
        // Decoded before the lock, into scratch kept from chunk to chunk (no
        // allocation per chunk): deliver() runs under the pool's engine, never twice at once.
        decoded_.clear();
        decode_results<S, R>(first, count, results, [&](std::size_t index, R&& value) {
            decoded_.emplace_back(index, outcome(std::in_place_index<1>, std::move(value)));
        });
        std::lock_guard guard(mutex_);
        for (auto& [index, value] : decoded_) store(index, std::move(value));
        decoded_.clear();  // what a move left behind goes now, not at the next chunk
        arrivals_.fetch_add(1, std::memory_order_release);
        arrived_.notify_all();
    }

    void fail(std::size_t index, std::exception_ptr error) override {
        std::lock_guard guard(mutex_);
        store(index, outcome(std::in_place_index<0>, std::move(error)));
        arrivals_.fetch_add(1, std::memory_order_release);
        arrived_.notify_all();
    }

    void complete() override {
        std::lock_guard guard(mutex_);
        completed_ = true;
        arrivals_.fetch_add(1, std::memory_order_release);
        arrived_.notify_all();
    }

    /// The outcome of the next result (task `index` when ordered, any when not).
    /// Blocks until it is there; nullopt if the job completed without it.
    std::optional<outcome> take(std::size_t index) {
        std::unique_lock lock(mutex_);
        for (;;) {
            if (ordered_) {
                if (auto found = by_index_.find(index); found != by_index_.end()) {
                    outcome value = std::move(found->second);
                    by_index_.erase(found);
                    return value;
                }
            } else if (!arrival_order_.empty()) {
                outcome value = std::move(arrival_order_.front());
                arrival_order_.pop_front();
                return value;
            }
            if (completed_) return std::nullopt;
            // Results of small tasks are often a few microseconds apart: look for
            // the next one before sleeping, which costs both sides a futex call.
            const std::uint64_t seen = arrivals_.load(std::memory_order_relaxed);
            lock.unlock();
            spin_then_check([&] { return arrivals_.load(std::memory_order_acquire) != seen; });
            lock.lock();
            arrived_.wait(lock, [&] { return arrivals_.load(std::memory_order_relaxed) != seen; });
        }
    }

private:
    void store(std::size_t index, outcome value) {
        if (cancelled()) return;  // the view is gone: results are dropped
        if (ordered_)
            by_index_.emplace(index, std::move(value));
        else
            arrival_order_.push_back(std::move(value));
    }

    const bool ordered_;
    std::mutex mutex_;
    std::condition_variable arrived_;
    std::map<std::size_t, outcome> by_index_;
    reusable_queue<outcome> arrival_order_;
    std::vector<std::pair<std::size_t, outcome>> decoded_;  // deliver()'s scratch
    bool completed_ = false;
    std::atomic<std::uint64_t> arrivals_{0};  // changes under mutex_; read without it while spinning
};

}  // namespace mpp::detail
