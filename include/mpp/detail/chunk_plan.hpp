// How big a chunk to send and how many to keep queued per worker. An explicit
// chunksize is honoured exactly; chunksize 0 adapts to measured task time, so
// trivial tasks travel in a few large chunks and slow or uneven ones stay balanced.
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
    bool measured() const noexcept { return measured_tasks_ > 0; }

    /// Tasks for the next chunk, given how many are waiting to be sent and
    /// whether more may still arrive (a lazy imap input).
    std::size_t next_size(std::size_t waiting, bool more_may_come) const noexcept {
        if (!automatic()) return explicit_size_;
        if (!measured()) return first_chunk_tasks;
        const double per_task = ns_per_task();
        const std::size_t fit = tasks_lasting(target_chunk_ns, per_task);
        if (more_may_come) return std::clamp<std::size_t>(fit, 1, std::max<std::size_t>(waiting, 1));
        // Near the end, chunks shrink to a share of what is left so the last ones
        // spread over all workers (Python's ceil(n / (4 * workers)) in spirit, but
        // applied to what remains); never below what is worth a round trip.
        const std::size_t share = (waiting + 2 * workers_ - 1) / (2 * workers_);
        const std::size_t floor = tasks_lasting(smallest_chunk_ns, per_task);
        return std::clamp<std::size_t>(std::min(fit, std::max(share, floor)), 1, std::max<std::size_t>(waiting, 1));
    }

    /// How many chunks to keep queued on a worker: enough that it never waits for
    /// the pool thread, few enough that a slow chunk does not strand work behind it.
    /// A chunk long enough to hide the hand-off (long_chunk_ns) goes alone: with two
    /// queued, a job's last 10 ms item could wait behind another on one worker while
    /// the other worker had nothing left.
    /// `recent_chunk_ns` (what chunks of any job took lately, 0 if unknown) stands
    /// in for a job not measured yet, e.g. each of many single-task apply_async jobs.
    std::size_t queue_depth(double recent_chunk_ns = 0) const noexcept {
        // An automatic plan probes with small chunks until its first one returns; a
        // deep queue of probes would only be a slow start.
        if (automatic() && !measured()) return 2;
        const double chunk_ns = measured() ? estimated_chunk_ns() : recent_chunk_ns;
        if (chunk_ns <= 0) return 2;
        if (chunk_ns >= long_chunk_ns) return 1;
        return static_cast<std::size_t>(std::clamp(pipeline_ns / chunk_ns, 2.0, 512.0));
    }

    /// Expected run time of one full-sized chunk as this plan sizes them.
    double estimated_chunk_ns() const noexcept {
        if (!measured()) return target_chunk_ns;
        return automatic() ? std::max(target_chunk_ns, ns_per_task()) : ns_per_task() * static_cast<double>(explicit_size_);
    }

    /// Expected run time of a chunk of `count` tasks (the target before any is measured).
    double estimated_ns(std::size_t count) const noexcept {
        return measured() ? ns_per_task() * static_cast<double>(count) : target_chunk_ns;
    }

    /// A finished chunk: `count` tasks took `elapsed_ns` in the worker.
    void record(std::uint32_t count, std::uint64_t elapsed_ns) noexcept {
        if (count == 0) return;
        // A moving average weighted by tasks, not by chunks: a large chunk says more
        // than a small one (the first, cold chunk of 8 is soon outweighed), and a
        // chunk that caught one of a few slow items pulls the mean only by its share.
        measured_ns_ = measured_ns_ * forget + static_cast<double>(elapsed_ns);
        measured_tasks_ = measured_tasks_ * forget + count;
        const double sample = static_cast<double>(elapsed_ns) / count;
        fastest_probe_ns_ = fastest_probe_ns_ == 0 ? sample : std::min(fastest_probe_ns_, sample);
        if (count > first_chunk_tasks) probing_ = false;
    }

private:
    double ns_per_task() const noexcept {
        // While only probes have come back, trust the fastest: the first chunk a
        // worker runs is cold (its caches, its buffers' first page faults) and for
        // trivial tasks costs ten times the rest, which would make the first real
        // chunks needlessly small. The next chunk's own time corrects an optimist.
        if (probing_) return std::max(fastest_probe_ns_, 0.1);
        return std::max(measured_ns_ / measured_tasks_, 0.1);
    }

    static std::size_t tasks_lasting(double ns, double per_task) noexcept {
        return static_cast<std::size_t>(std::clamp(ns / per_task, 1.0, 1e9));
    }

    static constexpr std::size_t first_chunk_tasks = 8;
    // Long enough that a round trip is noise, also on the pool thread, which shares
    // the cores with the workers: at 0.5 ms, 20,000 items of which 1% are 1000x
    // slower ran 14% slower than with hand-picked chunks; at 2 ms, as fast as the best.
    static constexpr double target_chunk_ns = 2'000'000;
    static constexpr double smallest_chunk_ns = 50'000;  // shorter chunks cost more to send than they balance
    static constexpr double pipeline_ns = 1'000'000;     // work queued ahead of each worker
    static constexpr double long_chunk_ns = 5'000'000;   // a chunk that goes alone (queue_depth)
    static constexpr double forget = 0.8;                // per chunk: older measurements fade

    std::size_t explicit_size_;
    std::size_t workers_;
    double measured_ns_ = 0;
    double measured_tasks_ = 0;
    double fastest_probe_ns_ = 0;  // per task, over the probes
    bool probing_ = true;          // no chunk larger than a probe has come back yet
};

}  // namespace mpp::detail
