// One submitted piece of work (an apply, a map, an imap) as the pool thread sees
// it: encoded items waiting to be sent, typed results coming back through
// virtual calls. Items stay alive until their results arrive, so the chunks of a
// crashed worker can be sent again.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include <boost/container/small_vector.hpp>

#include "mpp/detail/chunk_plan.hpp"
#include "mpp/detail/chunk_wire.hpp"

namespace mpp::detail {

/// Consecutive items of one job, still encoded (each framed by its length).
struct chunk_piece {
    std::shared_ptr<const void> block;  // keeps `items` alive (null: the job owns them)
    std::span<const std::byte> items;
    std::size_t first_index = 0;
    std::uint32_t count = 0;
    std::uint32_t attempts = 0;  // crashes this piece's items already caused
};

/// Bytes taken by the first `n` items of `items`: n * stride for flat items
/// (stride > 0), else walked through their length frames.
inline std::size_t items_prefix_bytes(std::span<const std::byte> items, std::size_t n, std::size_t stride) noexcept {
    if (stride != 0) return n * stride;
    std::size_t offset = 0;
    for (std::size_t i = 0; i < n; ++i) {
        item_length length = 0;
        std::memcpy(&length, items.data() + offset, sizeof length);
        offset += sizeof length + static_cast<std::size_t>(length);
    }
    return offset;
}

/// Splits the first `n` items (0 < n < count) off a piece.
inline std::pair<chunk_piece, chunk_piece> split_piece(const chunk_piece& piece, std::uint32_t n, std::size_t stride) {
    const std::size_t bytes = items_prefix_bytes(piece.items, n, stride);
    chunk_piece head{piece.block, piece.items.first(bytes), piece.first_index, n, piece.attempts};
    chunk_piece tail{piece.block, piece.items.subspan(bytes), piece.first_index + n, piece.count - n, piece.attempts};
    return {std::move(head), std::move(tail)};
}

/// Appends items to a block: begin_item, encode into out(), end_item. Items are
/// length-framed unless they are flat (fixed size, stride > 0).
class item_block_writer {
public:
    explicit item_block_writer(std::size_t stride = 0) noexcept : stride_(stride) {}

    void begin_item() {
        start_ = out_.size();
        if (stride_ == 0) out_.extend(sizeof(item_length));
    }
    void end_item() noexcept {
        if (stride_ == 0) {
            const item_length length = out_.size() - start_ - sizeof(item_length);
            // The writer owns a std::vector<std::byte>; its bytes are ours to patch.
            std::memcpy(const_cast<std::byte*>(out_.bytes().data()) + start_, &length, sizeof length);
        }
        ++count_;
    }
    /// For flat items: `n` items' bytes at once.
    void append_flat(const void* data, std::size_t n) {
        out_.write(data, n * stride_);
        count_ += n;
    }
    /// For fixed-size items: room for `n` of them, to be filled with store_fixed.
    std::byte* append_fixed(std::size_t n) {
        count_ += n;
        return out_.extend(n * stride_);
    }
    void abandon_item() noexcept { out_.truncate(start_); }
    writer& out() noexcept { return out_; }
    std::size_t count() const noexcept { return count_; }
    std::vector<std::byte> take() && { return std::move(out_).take(); }

private:
    writer out_;
    std::size_t stride_;
    std::size_t start_ = 0;
    std::size_t count_ = 0;
};

class job_base {
public:
    /// `item_stride`: bytes per item for flat items, 0 for length-framed ones.
    job_base(chunk_runner runner, callable_bytes callable, chunk_plan plan, std::size_t item_stride)
        : runner_(runner), callable_(std::move(callable)), plan_(plan), item_stride_(item_stride) {}
    virtual ~job_base() = default;
    job_base(const job_base&) = delete;
    job_base& operator=(const job_base&) = delete;

    // ---- the submitting side (any thread) -----------------------------------

    /// Adds `count` framed items; `last` marks the end of the input.
    void add_items(std::vector<std::byte> bytes, std::size_t count, bool last) {
        auto block = std::make_shared<const std::vector<std::byte>>(std::move(bytes));
        const std::span<const std::byte> items(*block);
        add_items(std::move(block), items, count, last);
    }

    /// As above, for items in memory `owner` keeps alive (a staging lease), or
    /// with a null owner, in memory the derived job owns for its whole life.
    void add_items(std::shared_ptr<const void> owner, std::span<const std::byte> items, std::size_t count, bool last) {
        std::lock_guard guard(mutex_);
        if (count > 0) {
            fresh_.push_back(fresh_block{chunk_piece{std::move(owner), items, total_}, count});
            total_ += count;
            fresh_waiting_ += count;
        }
        if (last) input_done_ = true;
    }

    /// The consumer is gone (an imap view destroyed early): unsent items are
    /// dropped; chunks already sent finish and their results are discarded.
    void cancel() {
        std::lock_guard guard(mutex_);
        cancelled_.store(true, std::memory_order_release);
        fresh_.clear();
        retries_.clear();
        fresh_waiting_ = 0;
    }

    // ---- the pool thread ----------------------------------------------------

    /// The next chunk to send, at most `limit` tasks: retries first, then fresh items.
    std::optional<chunk_piece> take_chunk(std::size_t limit) {
        std::lock_guard guard(mutex_);
        if (!retries_.empty()) {
            chunk_piece piece = std::move(retries_.front());
            if (piece.count > limit) {
                auto [head, tail] = split_piece(piece, static_cast<std::uint32_t>(limit), item_stride_);
                retries_.front() = std::move(tail);
                piece = std::move(head);
            } else {
                retries_.erase(retries_.begin());
            }
            in_flight_ += piece.count;
            return piece;
        }
        if (fresh_.empty()) return std::nullopt;
        chunk_piece& front = fresh_.front().piece;
        std::size_t& left = fresh_.front().left;
        const std::size_t wanted = std::min(plan_.next_size(fresh_waiting_, !input_done_), limit);
        const auto n = static_cast<std::uint32_t>(std::min<std::size_t>({wanted, left, UINT32_MAX}));
        const std::size_t bytes = items_prefix_bytes(front.items, n, item_stride_);
        chunk_piece piece{front.block, front.items.first(bytes), front.first_index, n, 0};
        front.items = front.items.subspan(bytes);
        front.first_index += n;
        left -= n;
        fresh_waiting_ -= n;
        if (left == 0) fresh_.erase(fresh_.begin());
        in_flight_ += piece.count;
        return piece;
    }

    /// A sent piece came back unrun (its worker died): send it again, before fresh items.
    void requeue(chunk_piece piece) {
        std::lock_guard guard(mutex_);
        in_flight_ -= piece.count;
        if (!cancelled_.load(std::memory_order_relaxed)) retries_.push_back(std::move(piece));
    }

    /// `count` sent tasks are settled (delivered or failed). Returns finished().
    bool settled(std::size_t count) {
        std::lock_guard guard(mutex_);
        in_flight_ -= count;
        completed_ += count;
        return finished_locked();
    }

    /// Every task settled (or, once cancelled, every sent one): complete() is due.
    bool finished() {
        std::lock_guard guard(mutex_);
        return finished_locked();
    }

    /// Fails every task not yet sent (terminate()). Sent ones are failed by the pool.
    void fail_waiting(const std::exception_ptr& error) {
        std::vector<std::size_t> indexes;
        {
            std::lock_guard guard(mutex_);
            for (const chunk_piece& piece : retries_)
                for (std::uint32_t i = 0; i < piece.count; ++i) indexes.push_back(piece.first_index + i);
            for (const fresh_block& block : fresh_)
                for (std::size_t i = 0; i < block.left; ++i) indexes.push_back(block.piece.first_index + i);
            retries_.clear();
            fresh_.clear();
            fresh_waiting_ = 0;
            completed_ += indexes.size();
            input_done_ = true;
        }
        for (std::size_t index : indexes) fail(index, error);
    }

    /// Where the pool thread keeps this job among its unfinished ones (pool thread only).
    static constexpr std::size_t no_slot = SIZE_MAX;
    std::size_t unfinished_slot = no_slot;
    /// The CPU a caller waits on for this one-task job's result, handed to its
    /// worker itself (pool_core::submit_and_watch); -1 otherwise.
    int watcher_cpu = -1;

    chunk_runner runner() const noexcept { return runner_; }
    std::size_t item_stride() const noexcept { return item_stride_; }
    std::span<const std::byte> callable() const noexcept { return callable_.bytes(); }
    chunk_plan& plan() noexcept { return plan_; }
    /// Read without the lock: a stream asks for every result it files.
    bool cancelled() const noexcept { return cancelled_.load(std::memory_order_acquire); }

    /// Decodes the results of tasks [first, first + count) (pool thread).
    virtual void deliver(std::size_t first, std::uint32_t count, reader& results) = 0;
    /// Task `index` failed without a result of its own (crash, timeout, terminate).
    virtual void fail(std::size_t index, std::exception_ptr error) = 0;
    /// Every task is settled: publish the outcome.
    virtual void complete() = 0;

protected:
    /// For deliver(): decodes each task's outcome (as run_chunk wrote it) and calls
    /// on_value(index, R&&) (on_value(index) for void) or fail(index, error). A
    /// result that cannot be decoded fails the rest of the chunk. With `dense_out`,
    /// flat results that all succeeded are copied there in one go instead.
    template <class S, class R, class OnValue>
    void decode_results(std::size_t first, std::uint32_t count, reader& results, OnValue&& on_value,
                        R* dense_out = nullptr) {
        std::uint32_t i = 0;
        try {
            if constexpr (fixed_encoded_size<S, R>() != 0) {
                result_layout layout{};
                std::memcpy(&layout, results.read(1).data(), 1);
                if (layout == result_layout::dense) {
                    constexpr std::size_t size = fixed_encoded_size<S, R>();
                    const std::byte* values = results.read(std::size_t{count} * size).data();
                    if constexpr (flat_encoded<S, R>()) {
                        if (dense_out != nullptr) {
                            std::memcpy(static_cast<void*>(dense_out), values, std::size_t{count} * size);
                            return;
                        }
                    }
                    for (; i < count; ++i) on_value(first + i, load_fixed<S, R>(values + std::size_t{i} * size));
                    return;
                }
            }
            for (; i < count; ++i) {
                task_status status{};
                std::memcpy(&status, results.read(1).data(), 1);
                if (status != task_status::ok)
                    fail(first + i, load_exception(results));
                else if constexpr (std::is_void_v<R>)
                    on_value(first + i);
                else
                    on_value(first + i, load_with<S, R>(results));
            }
        } catch (...) {
            const auto error = std::current_exception();
            for (; i < count; ++i) fail(first + i, error);
        }
    }

private:
    bool finished_locked() const noexcept {
        if (cancelled_.load(std::memory_order_relaxed)) return in_flight_ == 0;
        return input_done_ && completed_ == total_;
    }

    chunk_runner runner_;
    callable_bytes callable_;
    chunk_plan plan_;
    std::size_t item_stride_;

    std::mutex mutex_;                    // guards everything below
    struct fresh_block {
        chunk_piece piece;  // what is left of the block to send
        std::size_t left;   // items in it
    };
    // Few entries at a time (an apply has one block, an imap a window's worth), so
    // vectors that allocate nothing while they hold one block or none beat deques,
    // which allocate two blocks as soon as they are made: that was most of the
    // allocations behind each apply_async.
    boost::container::small_vector<fresh_block, 1> fresh_;  // unsent items, block by block
    std::vector<chunk_piece> retries_;                      // pieces to send again, oldest first
    std::size_t fresh_waiting_ = 0;
    std::size_t total_ = 0;
    std::size_t completed_ = 0;
    std::size_t in_flight_ = 0;
    bool input_done_ = false;
    std::atomic<bool> cancelled_{false};  // written under mutex_, read also without it
};

}  // namespace mpp::detail
