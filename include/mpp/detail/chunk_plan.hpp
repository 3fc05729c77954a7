// How big a chunk to send and how many to keep queued per worker. An explicit
// chunksize is honoured exactly; chunksize 0 adapts to measured task time, so
// trivial tasks travel in large chunks and slow or uneven ones stay balanced.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace mpp::detail {

class chunk_plan {
public:
    chunk_plan(std::size_t explicit_size, std::size_t workers) noexcept
        : explicit_size_(explicit_size), workers_(std::max<std::size_t>(workers, 1)) {}

    bool automatic() const noexcept { return explicit_size_ == 0; }
    /// Whether a chunk of this job has finished yet (until then sizes are guesses).
    bool measured() const noexcept { return measured_; }

    /// Tasks for the next chunk, given how many are waiting to be sent and
    /// whether more may still arrive (a lazy imap input).
    std::size_t next_size(std::size_t waiting, bool more_may_come) const noexcept {
        if (!automatic()) return explicit_size_;
        // Never more than a share of what is left, so the last chunks spread over
        // all workers (Python's ceil(n / (4 * workers)) in spirit, but applied to
        // what remains rather than to the whole input).
        const std::size_t balance_cap =
            more_may_come ? std::max<std::size_t>(waiting, 1) : (waiting + 2 * workers_ - 1) / (2 * workers_);
        std::size_t size = first_chunk_tasks;
        if (measured_) {
            const double fit = target_chunk_ns / std::max(ns_per_task_, 1.0);
            size = static_cast<std::size_t>(std::clamp(fit, 1.0, 1e9));
        }
        return std::clamp<std::size_t>(size, 1, std::max<std::size_t>(balance_cap, 1));
    }

    /// How many chunks to keep queued on a worker: enough that it never waits for
    /// the pool thread, few enough that a slow chunk does not strand work behind it.
    /// `recent_chunk_ns` (what chunks of any job took lately, 0 if unknown) stands
    /// in for a job not measured yet, e.g. each of many single-task apply_async jobs.
    std::size_t queue_depth(double recent_chunk_ns = 0) const noexcept {
        const double chunk_ns = measured_ ? estimated_chunk_ns() : recent_chunk_ns;
        if (chunk_ns <= 0) return 2;
        return static_cast<std::size_t>(std::clamp(pipeline_ns / chunk_ns, 2.0, 512.0));
    }

    /// Expected run time of one chunk as this plan sizes them.
    double estimated_chunk_ns() const noexcept {
        if (!measured_) return target_chunk_ns;
        return automatic() ? std::max(target_chunk_ns, ns_per_task_) : ns_per_task_ * static_cast<double>(explicit_size_);
    }

    /// A finished chunk: `count` tasks took `elapsed_ns` in the worker.
    void record(std::uint32_t count, std::uint64_t elapsed_ns) noexcept {
        if (count == 0) return;
        const double sample = static_cast<double>(elapsed_ns) / count;
        // An exponential moving average that follows changes within a few chunks.
        ns_per_task_ = measured_ ? 0.7 * ns_per_task_ + 0.3 * sample : sample;
        measured_ = true;
    }

private:
    static constexpr std::size_t first_chunk_tasks = 8;
    static constexpr double target_chunk_ns = 200'000;  // long enough to amortise a round trip
    static constexpr double pipeline_ns = 400'000;      // work queued ahead of each worker

    std::size_t explicit_size_;
    std::size_t workers_;
    double ns_per_task_ = 0;
    bool measured_ = false;
};

}  // namespace mpp::detail
