// The view imap and imap_unordered return: a move-only input range that reads
// its input lazily on the consumer's thread through a bounded window, so an
// endless generator streams through in bounded memory. Destroying it early
// stops reading input; results of chunks already sent are dropped.
#pragma once

#include <algorithm>
#include <cstddef>
#include <exception>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <type_traits>
#include <utility>
#include <variant>

#include "mpp/detail/pool_core.hpp"
#include "mpp/detail/pool_jobs.hpp"

namespace mpp::detail {

template <class S, class R, class Input>
class imap_view {
    using job_type = stream_job<S, R>;

    // On the heap, so the view can move while iterators into the input stay valid.
    struct input_state {
        explicit input_state(Input&& range) : range(std::forward<Input>(range)) {}
        std::mutex mutex;
        Input range;  // a value for an rvalue input, a reference for an lvalue one
        std::optional<std::ranges::iterator_t<std::remove_reference_t<Input>>> next;
        bool exhausted = false;
        std::size_t pulled = 0;  // items handed to the job so far
    };

public:
    imap_view(std::shared_ptr<pool_core> core, std::shared_ptr<job_type> job, Input&& input, std::size_t window)
        : core_(std::move(core)),
          job_(std::move(job)),
          input_(std::make_shared<input_state>(std::forward<Input>(input))),
          window_(window) {
        // join() reads whatever input is left (as Python's imap would have queued it all).
        drainer_ = core_->add_drainer([input = input_, job = job_, core = core_.get()] {
            for (bool more = true; more;) {
                more = pull(*input, *job, SIZE_MAX);
                core->input_added(job);  // also after the last batch, or the pool never sees it
            }
        });
    }

    imap_view(imap_view&& other) noexcept
        : core_(std::move(other.core_)),
          job_(std::move(other.job_)),
          input_(std::move(other.input_)),
          window_(other.window_),
          drainer_(other.drainer_),
          consumed_(other.consumed_),
          current_(std::move(other.current_)) {}
    imap_view& operator=(imap_view&&) = delete;
    imap_view(const imap_view&) = delete;
    imap_view& operator=(const imap_view&) = delete;

    ~imap_view() {
        if (!core_) return;
        core_->remove_drainer(drainer_);
        job_->cancel();
        core_->input_added(job_);  // lets the pool notice the job may be finished
    }

    class iterator {
    public:
        using value_type = R;
        using difference_type = std::ptrdiff_t;
        using reference = R&;
        using iterator_concept = std::input_iterator_tag;

        iterator() = default;
        explicit iterator(imap_view* view) : view_(view) {}

        /// The current result; rethrows the task's exception if it failed.
        R& operator*() const { return view_->current(); }
        R* operator->() const { return &view_->current(); }
        iterator& operator++() {
            view_->advance();
            return *this;
        }
        void operator++(int) { ++*this; }
        friend bool operator==(const iterator& it, std::default_sentinel_t) { return it.finished(); }

    private:
        bool finished() const { return view_->at_end(); }
        imap_view* view_ = nullptr;
    };

    iterator begin() { return iterator(this); }
    std::default_sentinel_t end() const noexcept { return {}; }

private:
    /// Reads up to `limit` more items of input into the job (caller's thread), at
    /// most a batch's worth of bytes. Returns whether input remains.
    static bool pull(input_state& input, job_type& job, std::size_t limit) {
        std::lock_guard guard(input.mutex);
        if (input.exhausted || limit == 0) return !input.exhausted;
        if (!input.next) input.next.emplace(std::ranges::begin(input.range));
        using value = std::ranges::range_value_t<std::remove_reference_t<Input>>;
        constexpr std::size_t stride = fixed_encoded_size<S, value>();
        constexpr std::size_t batch_bytes = std::size_t{8} << 20;
        item_block_writer block(stride);
        // A window's worth of fixed-size items in one allocation, not a doubling series.
        if constexpr (stride != 0) block.out().reserve(std::min<std::size_t>({limit, 4096, batch_bytes / stride}) * stride);
        while (block.count() < limit && block.out().size() < batch_bytes) {
            if (*input.next == std::ranges::end(input.range)) {
                input.exhausted = true;
                break;
            }
            block.begin_item();
            try {
                save_with<S>(block.out(), static_cast<const value&>(**input.next));
            } catch (...) {
                block.abandon_item();
                throw;
            }
            block.end_item();
            ++*input.next;
        }
        const std::size_t count = block.count();
        input.pulled += count;
        job.add_items(std::move(block).take(), count, input.exhausted);
        return !input.exhausted;
    }

    /// Keeps `window_` items in flight beyond what the consumer has taken.
    void top_up() {
        std::size_t pulled = 0;
        bool exhausted = false;
        {
            std::lock_guard guard(input_->mutex);
            pulled = input_->pulled;
            exhausted = input_->exhausted;
        }
        if (exhausted) return;
        const std::size_t outstanding = pulled - consumed_;
        if (outstanding > window_ / 2) return;
        pull(*input_, *job_, window_ - outstanding);
        core_->input_added(job_);
    }

    bool at_end() {
        if (current_) return false;
        top_up();
        std::lock_guard guard(input_->mutex);
        return input_->exhausted && consumed_ == input_->pulled;
    }

    /// Waits for the result at the current position (not rethrowing a failure).
    void fetch() {
        if (current_) return;
        top_up();
        auto next = job_->take(consumed_);
        if (!next) throw PoolTerminated("imap: the pool stopped before this result was produced");
        current_.emplace(std::move(*next));
    }

    R& current() {
        fetch();
        if (current_->index() == 0) std::rethrow_exception(std::get<0>(*current_));
        return std::get<1>(*current_);
    }

    void advance() {
        fetch();  // a result skipped without being looked at is still waited for
        current_.reset();
        ++consumed_;
        top_up();
    }

    std::shared_ptr<pool_core> core_;
    std::shared_ptr<job_type> job_;
    std::shared_ptr<input_state> input_;
    std::size_t window_;
    std::size_t drainer_ = 0;
    std::size_t consumed_ = 0;
    std::optional<typename job_type::outcome> current_;
};

}  // namespace mpp::detail

namespace std::ranges {
template <class S, class R, class Input>
inline constexpr bool enable_view<mpp::detail::imap_view<S, R, Input>> = true;
}  // namespace std::ranges
