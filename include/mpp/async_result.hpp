// AsyncResult<T>: the future of a task submitted to a Pool, like Python's
// AsyncResult and std::future. Callbacks registered before completion run on the
// pool's thread before ready() turns true, so get() never races a callback.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "mpp/detail/futex.hpp"
#include "mpp/errors.hpp"

namespace mpp {

namespace detail {

/// The value slot of a result: T, or nothing for void.
template <class T>
using stored_value = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

// A specialization, not std::conditional_t: conditional_t would form `const void&` for T = void.
template <class T>
struct value_callback_for {
    using type = std::function<void(const T&)>;
};
template <>
struct value_callback_for<void> {
    using type = std::function<void()>;
};
template <class T>
using value_callback = typename value_callback_for<T>::type;
using error_callback = std::function<void(std::exception_ptr)>;

/// Shared between an AsyncResult and the pool thread that completes it.
template <class T>
class result_state {
public:
    /// Pool thread: settle with a value or an error, run the callbacks, then turn ready.
    void set_value(stored_value<T> value) { settle(std::move(value), nullptr); }
    void set_exception(std::exception_ptr error) { settle(std::nullopt, std::move(error)); }

    void add_callbacks(value_callback<T> on_value, error_callback on_error) {
        std::unique_lock lock(mutex_);
        if (phase_ != phase::ready) {
            // Still pending, or the completer is running callbacks right now: it
            // runs these too, before turning ready.
            callbacks_.push_back({std::move(on_value), std::move(on_error)});
            return;
        }
        lock.unlock();
        run({std::move(on_value), std::move(on_error)});  // already complete: right here
    }

    bool ready() const {
        std::lock_guard guard(mutex_);
        return phase_ == phase::ready;
    }
    bool successful() const {
        std::lock_guard guard(mutex_);
        if (phase_ != phase::ready) throw std::logic_error("AsyncResult::successful: the result is not ready yet");
        return error_ == nullptr;
    }
    void wait() const {
        // A result is often a few microseconds away: look before going to sleep.
        for (int i = 0; i < spin_budget && !ready_hint_.load(std::memory_order_acquire); ++i) cpu_relax();
        std::unique_lock lock(mutex_);
        became_ready_.wait(lock, [&] { return phase_ == phase::ready; });
    }
    template <class Clock, class Duration>
    bool wait_until(std::chrono::time_point<Clock, Duration> deadline) const {
        std::unique_lock lock(mutex_);
        return became_ready_.wait_until(lock, deadline, [&] { return phase_ == phase::ready; });
    }

    /// Caller: the value (consumed) or the task's exception (rethrown, every time).
    stored_value<T> take() {
        std::lock_guard guard(mutex_);
        if (error_) std::rethrow_exception(error_);
        if (!value_) throw std::logic_error("AsyncResult::get: the value was already taken");
        stored_value<T> value = std::move(*value_);
        value_.reset();
        taken_ = true;
        return value;
    }
    bool taken() const {
        std::lock_guard guard(mutex_);
        return taken_;
    }

private:
    enum class phase { pending, completing, ready };
    struct callback_pair {
        value_callback<T> on_value;
        error_callback on_error;
    };

    void settle(std::optional<stored_value<T>> value, std::exception_ptr error) {
        std::vector<callback_pair> due;
        {
            std::lock_guard guard(mutex_);
            if (phase_ != phase::pending) return;  // settled once only
            value_ = std::move(value);
            error_ = std::move(error);
            if (callbacks_.empty()) {  // the common case: ready at once, one lock
                phase_ = phase::ready;
                ready_hint_.store(true, std::memory_order_release);
            } else {
                phase_ = phase::completing;
                due.swap(callbacks_);
            }
        }
        while (!due.empty()) {
            for (auto& pair : due) run(std::move(pair));
            std::lock_guard guard(mutex_);
            due.clear();
            if (callbacks_.empty()) {
                phase_ = phase::ready;
                ready_hint_.store(true, std::memory_order_release);
                break;
            }
            due.swap(callbacks_);  // registered while we ran the others
        }
        became_ready_.notify_all();
    }

    /// Runs one callback pair; a callback that throws is reported and ignored, so
    /// it cannot break the pool thread.
    void run(callback_pair pair) noexcept {
        try {
            if (error_) {
                if (pair.on_error) pair.on_error(error_);
            } else if (pair.on_value && value_) {  // (no value: get() already took it)
                if constexpr (std::is_void_v<T>)
                    pair.on_value();
                else
                    pair.on_value(*value_);
            }
        } catch (const std::exception& error) {
            std::fprintf(stderr, "mpp: an on_complete callback threw: %s\n", error.what());
        } catch (...) {
            std::fprintf(stderr, "mpp: an on_complete callback threw\n");
        }
    }

    mutable std::mutex mutex_;
    mutable std::condition_variable became_ready_;
    phase phase_ = phase::pending;
    std::atomic<bool> ready_hint_{false};  // phase_ == ready, readable without the mutex
    std::optional<stored_value<T>> value_;
    std::exception_ptr error_;
    bool taken_ = false;
    std::vector<callback_pair> callbacks_;
};

}  // namespace detail

template <class T>
class AsyncResult {
public:
    AsyncResult() = default;
    explicit AsyncResult(std::shared_ptr<detail::result_state<T>> state) : state_(std::move(state)) {}
    AsyncResult(AsyncResult&&) noexcept = default;
    AsyncResult& operator=(AsyncResult&&) noexcept = default;
    AsyncResult(const AsyncResult&) = delete;
    AsyncResult& operator=(const AsyncResult&) = delete;

    /// Waits, then returns the value (moved out: call once) or rethrows the task's exception.
    T get() {
        wait();
        return take();
    }

    /// As get(), but throws TimeoutError (consuming nothing) if not ready in time.
    template <class Rep, class Period>
    T get(std::chrono::duration<Rep, Period> timeout) {
        if (wait_for(timeout) != std::future_status::ready)
            throw TimeoutError("AsyncResult::get: the result was not ready within the timeout");
        return take();
    }

    void wait() const { checked().wait(); }

    template <class Rep, class Period>
    std::future_status wait_for(std::chrono::duration<Rep, Period> timeout) const {
        return checked().wait_until(detail::deadline_after(timeout)) ? std::future_status::ready : std::future_status::timeout;
    }

    bool ready() const { return checked().ready(); }
    /// Whether the task finished without an exception; std::logic_error if not ready.
    bool successful() const { return checked().successful(); }
    /// True while the result refers to a task and its value was not taken by get().
    bool valid() const noexcept { return state_ != nullptr && !state_->taken(); }

    /// Python's callback= / error_callback=.
    AsyncResult& on_complete(detail::value_callback<T> callback, detail::error_callback error_callback = {}) & {
        checked().add_callbacks(std::move(callback), std::move(error_callback));
        return *this;
    }
    AsyncResult on_complete(detail::value_callback<T> callback, detail::error_callback error_callback = {}) && {
        checked().add_callbacks(std::move(callback), std::move(error_callback));
        return std::move(*this);
    }

private:
    detail::result_state<T>& checked() const {
        if (!state_) throw std::logic_error("AsyncResult: this result has no task (moved from or default-constructed)");
        return *state_;
    }
    T take() {
        if constexpr (std::is_void_v<T>)
            checked().take();
        else
            return checked().take();
    }

    std::shared_ptr<detail::result_state<T>> state_;
};

}  // namespace mpp
