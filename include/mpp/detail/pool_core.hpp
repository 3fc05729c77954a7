// The engine behind every Pool: shared memory with one ring pair per worker, the
// fork server that makes and reaps workers, and one pool thread that sends
// chunks, collects results, completes jobs and handles deaths and timeouts. It
// sleeps on a single futex doorbell when there is nothing to do.
#pragma once

#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "mpp/detail/block_cache.hpp"
#include "mpp/detail/cpu_placement.hpp"
#include "mpp/detail/fork_server.hpp"
#include "mpp/detail/job.hpp"
#include "mpp/detail/reusable_queue.hpp"
#include "mpp/detail/segment.hpp"
#include "mpp/detail/spsc_ring.hpp"
#include "mpp/detail/staging.hpp"
#include "mpp/detail/worker_loop.hpp"
#include "mpp/errors.hpp"
#include "mpp/pool_options.hpp"

namespace mpp::detail {

inline constexpr std::size_t default_ring_bytes = std::size_t{256} << 10;
inline constexpr std::size_t max_ring_bytes = std::size_t{1} << 30;
inline constexpr std::size_t exit_message_bytes = sizeof(std::uint64_t) + sizeof(chunk_header);

/// The pool's own anonymous shared mapping: a header, the worker slots, the rings.
class pool_memory {
public:
    struct header {
        alignas(cache_line) eventcount doorbell;                // the pool thread sleeps here
        alignas(cache_line) std::atomic<std::uint32_t> deaths{0};  // bumped by the fork server per death notice
    };

    pool_memory(std::size_t workers, std::size_t ring_bytes, std::size_t task_staging_bytes,
                std::size_t result_staging_bytes)
        : workers_(workers),
          ring_bytes_(ring_bytes),
          staging_(std::make_shared<staging_memory>(workers, task_staging_bytes, result_staging_bytes)) {
        std::size_t rings = 0;
        if (__builtin_mul_overflow(2 * workers, spsc_ring::footprint(ring_bytes), &rings) ||
            __builtin_add_overflow(rings, round_up(sizeof(header)) + workers * round_up(sizeof(worker_slot)), &bytes_))
            throw std::invalid_argument("mpp: PoolOptions::ring_bytes (times the workers) is more than the address space holds");
        void* mapping = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (mapping == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mpp: mmap of the pool's rings");
        base_ = static_cast<std::byte*>(mapping);
        ::new (base_) header();
        for (std::size_t i = 0; i < workers; ++i) build_slot(i);
    }
    ~pool_memory() { ::munmap(base_, bytes_); }
    pool_memory(const pool_memory&) = delete;
    pool_memory& operator=(const pool_memory&) = delete;

    header& shared_header() const noexcept { return *reinterpret_cast<header*>(base_); }
    worker_slot& slot(std::size_t i) const noexcept {
        return *reinterpret_cast<worker_slot*>(base_ + round_up(sizeof(header)) + i * round_up(sizeof(worker_slot)));
    }

    /// Slot i, its rings and its result staging area, before any worker uses them.
    void build_slot(std::size_t i) {
        auto* fresh = ::new (&slot(i)) worker_slot();
        std::byte* rings = base_ + round_up(sizeof(header)) + workers_ * round_up(sizeof(worker_slot)) +
                           2 * i * spsc_ring::footprint(ring_bytes_);
        eventcount& doorbell = shared_header().doorbell;
        fresh->tasks = ::new (rings) spsc_ring(ring_bytes_, &fresh->task_readable, &doorbell);
        fresh->results =
            ::new (rings + spsc_ring::footprint(ring_bytes_)) spsc_ring(ring_bytes_, &doorbell, &fresh->result_writable);
        fresh->result_staging = staging_->result_area(i);
    }

    staging_memory& staging() const noexcept { return *staging_; }

private:
    static constexpr std::size_t round_up(std::size_t n) noexcept { return (n + cache_line - 1) / cache_line * cache_line; }

    std::size_t workers_;
    std::size_t ring_bytes_;
    std::shared_ptr<staging_memory> staging_;  // shared: leases may outlive the pool
    std::size_t bytes_ = 0;
    std::byte* base_ = nullptr;
};

class pool_core {
public:
    explicit pool_core(PoolOptions options, std::size_t processes)
        : options_(std::move(options)),
          processes_(processes),
          memory_(processes, ring_capacity(options_.ring_bytes),
                  options_.task_staging_bytes == 0 ? default_task_staging_bytes : options_.task_staging_bytes,
                  options_.result_staging_bytes == 0 ? default_result_staging_bytes : options_.result_staging_bytes),
          workers_(processes) {
        // Made before any fork, so primitives created later are shared with the workers.
        shared_segment::instance();
        // Output still buffered here would otherwise be printed again by every
        // worker that flushes its copy of the buffer.
        std::fflush(nullptr);
#if defined(__GLIBC__)
        // fork() copies the page table entry of every resident page, free or not,
        // once for the server and once per worker, and each exit tears them down
        // again; glibc keeps freed heap pages resident (after a large payload, often
        // more than the live data). Handing them back first makes the pool's start
        // and stop several times cheaper in such a process, and costs nothing on
        // reuse: while the server lives, a write to a kept page would fault for a
        // copy-on-write copy anyway, a trimmed one faults for a zero page instead.
        ::malloc_trim(0);
#endif
        // libstdc++'s operator new[] reaches operator new through a lazily bound
        // slot; bound here, the workers inherit it instead of each faulting in the
        // dynamic linker's tables to bind it again (mpp's CMake target links with
        // -z now for the program's own calls: see README, "Pool start and stop").
        ::operator delete[](::operator new[](1));
        pool_memory::header* shared = &memory_.shared_header();
        const pool_memory* memory = &memory_;
        const std::function<void()>* initializer = &options_.initializer;
        const std::size_t maxtasks = options_.maxtasksperchild;
        server_ = std::make_unique<fork_server>(
            [memory, initializer, maxtasks](std::size_t slot) { run_worker(memory->slot(slot), *initializer, maxtasks); },
            [shared] {
                shared->deaths.fetch_add(1, std::memory_order_release);
                shared->doorbell.notify();
            },
            processes_);
        // The server forks the workers while this thread goes on: work (or the
        // close) is queued in their rings before they run, and their pids reach
        // the pool thread a little later (pids() waits for them).
        for (std::size_t i = 0; i < processes_; ++i) adopt_worker(i, 0);
        thread_ = std::thread([this] { loop(); });
        pool_thread_id_ = thread_.get_id();  // read by callers only: join() resets thread_
    }

    ~pool_core() {
        terminate();
        join_thread();
    }
    pool_core(const pool_core&) = delete;
    pool_core& operator=(const pool_core&) = delete;

    std::size_t size() const noexcept { return processes_; }

    /// Where callers encode large arguments so that workers read them in place.
    staging_memory& staging() const noexcept { return memory_.staging(); }
    /// Where apply and apply_async jobs are allocated: their memory stays warm between bursts.
    const std::shared_ptr<block_cache>& job_memory() const noexcept { return job_memory_; }

    std::vector<pid_t> pids() const {
        std::unique_lock guard(control_mutex_);
        pids_known_.wait(guard, [this] { return pids_final_; });
        return pids_;
    }

    /// Queues a job; std::logic_error once the pool is closed or terminated.
    void submit(std::shared_ptr<job_base> job, const char* caller) {
        {
            std::lock_guard guard(control_mutex_);
            check_open(caller);
            incoming_jobs_.push_back(std::move(job));
        }
        wake();
    }

    /// Queues a job of one task whose caller waits for it (apply). When the pool
    /// thread sleeps with nothing queued and a worker idles, the caller writes the
    /// task into that worker's ring and collects the result itself: a round trip is
    /// then two hand-offs (caller -> worker -> caller), not four through the pool
    /// thread, and none when both sides are still spinning from the previous call.
    /// It picks a worker that last ran on another CPU than its own where it can.
    /// Returns once the result is in, or once the pool thread has taken over.
    void submit_and_watch(std::shared_ptr<job_base> job, const char* caller) {
        std::unique_lock engine(engine_mutex_, std::defer_lock);
        // Never from the pool thread (a callback calling apply): it holds the engine.
        if (std::this_thread::get_id() != pool_thread_id_) (void)engine.try_lock();
        const int caller_cpu = current_cpu();
        const std::size_t idle = engine.owns_lock() && ready_.empty() ? idle_worker_for(caller_cpu) : no_worker;
        bool direct = idle != no_worker;
        {
            std::lock_guard guard(control_mutex_);
            check_open(caller);
            direct = direct && incoming_jobs_.empty() && incoming_ready_.empty();
            if (!direct) incoming_jobs_.push_back(job);
        }
        if (!direct) {
            if (engine.owns_lock()) engine.unlock();
            wake();
            return;
        }
        // A worker on the caller's own CPU runs only once the caller yields it, and
        // the caller only once the worker sleeps or moves (cpu_placement.hpp): both
        // are told, or each call would cost a preemption (~16 us here, against
        // ~1.7 us on two CPUs).
        const bool shares_cpu = memory_.slot(idle).progress.cpu.load(std::memory_order_relaxed) == caller_cpu;
        if (shares_cpu) job->watcher_cpu = caller_cpu;
        // Open when we looked, under the engine: the pool thread sees a close only
        // after us, with this job among its unfinished ones.
        accept(job);
        feed(idle);
        const std::optional<watched_chunk> sent = locate(*job);
        if (!sent) {
            wake();  // not (wholly) in a ring yet: the pool thread finishes the sending
            return;
        }
        engine.unlock();
        watch(*sent, shares_cpu);
    }

    /// A lazy job (imap) received more items.
    void input_added(const std::shared_ptr<job_base>& job) {
        {
            std::lock_guard guard(control_mutex_);
            incoming_ready_.push_back(job);
        }
        wake();
    }

    void close() {
        {
            std::lock_guard guard(control_mutex_);
            closed_ = true;
        }
        wake();
    }

    void terminate() {
        {
            std::lock_guard guard(control_mutex_);
            closed_ = true;
            terminating_ = true;
        }
        wake();
    }

    /// Waits for the pool thread (and so every worker) to finish. Lazy inputs still
    /// open are read to their end first, on this thread, as Python's imap would
    /// have queued them all.
    void join() {
        {
            std::lock_guard guard(control_mutex_);
            if (!closed_) throw std::logic_error("Pool::join: call close() or terminate() first");
        }
        if (std::this_thread::get_id() == thread_.get_id())
            throw std::logic_error("Pool::join: called from the pool's own thread (inside a callback)");
        for (;;) {
            std::function<void()> drain;
            {
                std::lock_guard guard(control_mutex_);
                if (drainers_.empty()) break;
                drain = drainers_.begin()->second;
                drainers_.erase(drainers_.begin());
            }
            drain();
        }
        join_thread();
    }

    /// Registers a lazy input that join() must read to its end; returns its id.
    std::size_t add_drainer(std::function<void()> drain) {
        std::lock_guard guard(control_mutex_);
        drainers_.emplace(++last_drainer_, std::move(drain));
        return last_drainer_;
    }
    void remove_drainer(std::size_t id) {
        std::lock_guard guard(control_mutex_);
        drainers_.erase(id);
    }


private:
    /// Under control_mutex_: throws unless new work may be submitted.
    void check_open(const char* caller) const {
        // E.g. the first workers could not be forked: say why, not just "closed".
        if (engine_error_) std::rethrow_exception(engine_error_);
        if (closed_ || terminating_)
            throw std::logic_error(std::string("Pool::") + caller + ": the pool is closed; no new work is accepted");
    }

    /// A task a caller hands to a worker itself and whose result it collects.
    struct watched_chunk {
        std::size_t slot;
        pid_t pid;
        std::uint64_t seq;
    };

    /// Under the engine: where a one-task job went, if it is wholly in the ring of a
    /// worker whose pid is known (the first workers' pids arrive a little after the
    /// constructor returns).
    std::optional<watched_chunk> locate(const job_base& job) const {
        for (std::size_t i = 0; i < workers_.size(); ++i) {
            const worker_state& worker = workers_[i];
            if (worker.pid > 0 && worker.chunks.size() == 1 && worker.writing == 1 &&
                worker.chunks.front().job.get() == &job)
                return watched_chunk{i, worker.pid, worker.chunks.front().seq};
        }
        return std::nullopt;
    }

    /// Spins (about 50 us at most) for the watched chunk's result and takes it in
    /// under the engine; yields between looks when the worker shares our CPU. If it
    /// is not back by then, the pool thread takes over: it slept without looking at
    /// this worker, so it is woken to look again.
    void watch(const watched_chunk& sent, bool shares_cpu) {
        spsc_ring& results = *memory_.slot(sent.slot).results;
        const std::int64_t give_up = steady_now_ns() + 50'000;
        for (unsigned spin = 1;; ++spin) {
            if (results.readable() > 0) {
                std::lock_guard engine(engine_mutex_);
                if (take_watched_result(sent)) return;
            }
            if (shares_cpu) ::sched_yield(); else cpu_relax();
            // A yield may give another process a whole time slice: look at the clock each time.
            if ((shares_cpu || spin % 64 == 0) && steady_now_ns() > give_up) break;
        }
        std::lock_guard engine(engine_mutex_);
        if (is_outstanding(sent)) wake();
    }

    /// Under the engine: whether the watched chunk still waits for its result.
    bool is_outstanding(const watched_chunk& sent) const {
        const worker_state& worker = workers_[sent.slot];
        return worker.alive && worker.pid == sent.pid && !worker.chunks.empty() && worker.chunks.front().seq == sent.seq;
    }

    /// Under the engine: reads the watched chunk's result message (only that one:
    /// other jobs' results, and their callbacks, stay with the pool thread). True
    /// once the chunk is no longer outstanding, taken here or elsewhere.
    bool take_watched_result(const watched_chunk& sent) {
        if (!is_outstanding(sent)) return true;
        receive_results(workers_[sent.slot], /*max_messages=*/1);
        return !is_outstanding(sent);
    }

    struct sent_chunk {
        std::shared_ptr<job_base> job;
        chunk_piece piece;
        std::uint64_t seq = 0;
        std::array<std::byte, sizeof(std::uint64_t) + sizeof(chunk_header)> prefix{};  // length + header
    };

    struct worker_state {
        pid_t pid = 0;
        bool alive = false;
        bool timed_out = false;           // killed by us for task_timeout
        reusable_queue<sent_chunk> chunks;  // sent or being sent, oldest first
        std::size_t writing = 0;          // index in chunks of the one being written
        std::size_t written = 0;          // its bytes already in the ring
        std::size_t budget = SIZE_MAX;    // tasks it may still receive (maxtasksperchild)
        std::size_t depth = 2;            // chunks to keep queued on it (from the job's plan)
        bool unannounced = false;         // written into the ring, wake check not done yet
        bool exit_queued = false;         // the exit message is due after the chunks
        std::size_t exit_written = 0;
        std::uint64_t next_seq = 1;
        // The result message being assembled.
        std::array<std::byte, sizeof(std::uint64_t)> length_bytes{};
        std::size_t length_got = 0;
        byte_buffer incoming;
        std::size_t incoming_got = 0;
    };

    static std::size_t ring_capacity(std::size_t requested) {
        if (requested == 0) return default_ring_bytes;
        if (requested > max_ring_bytes)
            throw std::invalid_argument("mpp: PoolOptions::ring_bytes " + std::to_string(requested) +
                                        " is more than a ring may hold (1 GiB)");
        std::size_t capacity = 4096;
        while (capacity < requested) capacity *= 2;
        return capacity;
    }

    void wake() {
        control_changes_.fetch_add(1, std::memory_order_release);
        memory_.shared_header().doorbell.notify();
    }

    /// Joins the pool thread, then reaps the fork server, whose exit the pool
    /// thread asked for (or did itself, after a terminate).
    void join_thread() {
        std::lock_guard guard(join_mutex_);
        if (thread_.joinable()) thread_.join();
        server_->shutdown(/*kill_workers=*/false);
    }

    void start_worker(std::size_t slot) { adopt_worker(slot, server_->spawn(slot)); }

    void adopt_worker(std::size_t slot, pid_t pid) {
        worker_state& worker = workers_[slot];
        worker = worker_state{};
        worker.pid = pid;
        worker.alive = true;
        if (options_.maxtasksperchild != 0) worker.budget = options_.maxtasksperchild;
        std::lock_guard guard(control_mutex_);
        if (pids_.size() < processes_) pids_.resize(processes_);
        pids_[slot] = worker.pid;
    }

    // ---- the pool thread --------------------------------------------------------

    void loop() {
        try {
            adopt_first_workers();
            run_loop();
        } catch (...) {
            // The engine itself failed (the fork server died, fork() failed...):
            // nothing may hang, so every unfinished result fails with the cause.
            {
                std::lock_guard guard(control_mutex_);
                closed_ = true;
                terminating_ = true;
                engine_error_ = std::current_exception();
            }
            std::lock_guard engine(engine_mutex_);
            shut_down_now(std::current_exception());
        }
        // pids() stops waiting for pids that will never be announced.
        std::lock_guard guard(control_mutex_);
        pids_final_ = true;
        pids_known_.notify_all();
    }

    /// Waits for the fork server to announce the first workers (it forks them
    /// while the constructor returns) and publishes their pids.
    void adopt_first_workers() {
        server_->await_first();
        std::lock_guard engine(engine_mutex_);
        std::lock_guard guard(control_mutex_);
        for (std::size_t i = 0; i < processes_; ++i) workers_[i].pid = pids_[i] = server_->first_pids()[i];
        pids_final_ = true;
        pids_known_.notify_all();
    }

    void run_loop() {
        ::pthread_setname_np(::pthread_self(), "mpp-pool");  // tells it apart in top, perf and gdb
        std::unique_lock engine(engine_mutex_);  // released only while asleep
        for (;;) {
            bool progressed = absorb_control();
            if (terminating_seen_) {
                shut_down_now(std::make_exception_ptr(PoolTerminated()));
                return;
            }
            for (auto& worker : workers_) progressed |= receive_results(worker);
            progressed |= handle_deaths();
            progressed |= feed();
            check_timeouts();
            if (closed_seen_ && jobs_.empty()) {
                if (begin_or_finish_close()) return;
            }
            if (!progressed) sleep(engine);
        }
    }

    /// A submitted job joins the unfinished ones and the queue of those with chunks to send.
    void accept(const std::shared_ptr<job_base>& job) {
        ready_.push_back(job);
        job->unfinished_slot = jobs_.size();
        jobs_.push_back(job);
    }

    static constexpr std::size_t no_worker = SIZE_MAX;

    /// A live worker with nothing queued that may take a task now, one that last
    /// ran on another CPU than `cpu` if there is one; no_worker if none idles.
    std::size_t idle_worker_for(int cpu) const {
        std::size_t found = no_worker;
        for (std::size_t i = 0; i < workers_.size(); ++i) {
            const worker_state& worker = workers_[i];
            if (!worker.alive || !worker.chunks.empty() || worker.exit_queued || worker.budget == 0) continue;
            if (memory_.slot(i).progress.cpu.load(std::memory_order_relaxed) != cpu) return i;
            if (found == no_worker) found = i;
        }
        return found;
    }

    /// Takes submissions, new lazy items and close/terminate requests.
    bool absorb_control() {
        const auto changes = control_changes_.load(std::memory_order_acquire);
        if (changes == control_seen_) return false;
        control_seen_ = changes;
        // Swapped with the submitters' vectors, not moved out: both sides keep
        // their capacity, so a stream of submissions allocates nothing here.
        std::vector<std::shared_ptr<job_base>>& jobs = absorbed_jobs_;
        std::vector<std::shared_ptr<job_base>>& ready = absorbed_ready_;
        jobs.clear();
        ready.clear();
        {
            std::lock_guard guard(control_mutex_);
            jobs.swap(incoming_jobs_);
            ready.swap(incoming_ready_);
            closed_seen_ = closed_;
            terminating_seen_ = terminating_;
        }
        for (auto& job : jobs) {
            accept(job);
            complete_if_finished(job);  // an empty map is finished at once
        }
        for (auto& job : ready) {
            ready_.push_back(job);
            complete_if_finished(job);  // e.g. an imap view cancelled with nothing in flight
        }
        jobs.clear();
        ready.clear();
        return true;
    }

    /// Finishes writing what each worker was sent, then deals new chunks one per
    /// worker per round (not one worker's whole queue first: with few chunks,
    /// that would leave the others idle) while any has room for one.
    bool feed(std::size_t first = 0) {
        bool progressed = false;
        for (auto& worker : workers_) progressed |= write_pending(worker);
        const std::size_t count = workers_.size();
        for (bool dealt = true; dealt;) {
            dealt = false;
            for (std::size_t i = 0; i < count; ++i) dealt |= send_chunk(workers_[(first + i) % count]);
            progressed |= dealt;
        }
        for (std::size_t i = 0; i < workers_.size(); ++i) {
            if (std::exchange(workers_[i].unannounced, false)) memory_.slot(i).tasks->publish_written();
        }
        return progressed;
    }

    /// Sends one chunk to a worker if it has room for it.
    bool send_chunk(worker_state& worker) {
        while (worker.alive && !worker.exit_queued && worker.writing == worker.chunks.size() && worker.budget > 0 &&
               !ready_.empty()) {
            const std::shared_ptr<job_base>& job = ready_.front();
            worker.depth = job->plan().queue_depth(recent_chunk_ns_);
            if (worker.chunks.size() >= worker.depth) return false;
            auto piece = job->take_chunk(worker.budget);
            if (!piece) {
                ready_.pop_front();  // it comes back through requeue or input_added
                continue;
            }
            worker.budget = worker.budget == SIZE_MAX ? SIZE_MAX : worker.budget - piece->count;
            sent_chunk chunk{job, std::move(*piece), worker.next_seq++, {}};
            chunk_header header{chunk.seq, job->runner(), chunk.piece.count,
                                options_.task_timeout.count() > 0 ? 1u : 0u, job->callable().size()};
            header.watcher_cpu = job->watcher_cpu;
            const std::uint64_t length = sizeof header + job->callable().size() + chunk.piece.items.size();
            std::memcpy(chunk.prefix.data(), &length, sizeof length);
            std::memcpy(chunk.prefix.data() + sizeof length, &header, sizeof header);
            worker.chunks.push_back(std::move(chunk));
            if (worker.chunks.size() == 1) {
                write_pending(worker);  // it may be asleep with nothing to do: wake it now
            } else {
                // It is busy with the chunks before: the wake check (a fence and a load
                // of a line the worker writes) waits until feed() has dealt them all.
                spsc_ring& ring = *memory_.slot(static_cast<std::size_t>(&worker - workers_.data())).tasks;
                worker.unannounced |= write_into(worker, ring);
            }
            return true;
        }
        // A worker whose budget (maxtasksperchild) is spent exits by itself after
        // its last chunk; its death notice brings the replacement.
        return false;
    }

    /// Continues writing queued chunks (and the exit message) into the task ring.
    bool write_pending(worker_state& worker) {
        if (!worker.alive) return false;
        spsc_ring& ring = *memory_.slot(static_cast<std::size_t>(&worker - workers_.data())).tasks;
        const bool progressed = write_into(worker, ring);
        if (progressed) ring.publish_written();
        return progressed;
    }

    bool write_into(worker_state& worker, spsc_ring& ring) {
        bool progressed = false;
        while (worker.writing < worker.chunks.size()) {
            sent_chunk& chunk = worker.chunks[worker.writing];
            const bool staged = memory_.staging().holds(chunk.piece.items);
            if (staged && worker.written == 0) point_at_staged_items(chunk);
            const std::array<std::span<const std::byte>, 3> parts{
                std::span<const std::byte>(chunk.prefix), chunk.job->callable(),
                staged ? std::span<const std::byte>() : chunk.piece.items};
            std::size_t offset = worker.written;
            for (auto part : parts) {
                if (offset >= part.size()) {
                    offset -= part.size();
                    continue;
                }
                const std::size_t n = ring.try_write(part.subspan(offset));
                worker.written += n;
                progressed |= n > 0;
                if (n < part.size() - offset) return progressed;  // ring full
                offset = 0;
            }
            ++worker.writing;
            worker.written = 0;
        }
        if (worker.exit_queued) {
            std::array<std::byte, exit_message_bytes> exit_message{};
            const std::uint64_t length = sizeof(chunk_header);
            std::memcpy(exit_message.data(), &length, sizeof length);  // a zeroed header: seq 0 means exit
            while (worker.exit_written < exit_message.size()) {
                const std::size_t n = ring.try_write(std::span(exit_message).subspan(worker.exit_written));
                if (n == 0) break;
                worker.exit_written += n;
                progressed = true;
            }
        }
        return progressed;
    }

    /// Items already in the staging area stay there: the message carries where
    /// they are instead of the items themselves.
    static void point_at_staged_items(sent_chunk& chunk) noexcept {
        std::uint64_t length = 0;
        chunk_header header{};
        std::memcpy(&length, chunk.prefix.data(), sizeof length);
        std::memcpy(&header, chunk.prefix.data() + sizeof length, sizeof header);
        if (header.staged_items != nullptr) return;  // done on an earlier call
        header.staged_items = chunk.piece.items.data();
        header.staged_item_bytes = chunk.piece.items.size();
        length -= chunk.piece.items.size();
        std::memcpy(chunk.prefix.data(), &length, sizeof length);
        std::memcpy(chunk.prefix.data() + sizeof length, &header, sizeof header);
    }

    /// Reads the complete result messages a worker has written (all, or the first few).
    bool receive_results(worker_state& worker, std::size_t max_messages = std::numeric_limits<std::size_t>::max()) {
        if (!worker.alive && worker.chunks.empty()) return false;
        worker_slot& slot = memory_.slot(static_cast<std::size_t>(&worker - workers_.data()));
        spsc_ring& ring = *slot.results;
        const bool progressed = read_from(worker, ring, slot, max_messages);
        if (progressed) ring.publish_read();
        return progressed;
    }

    bool read_from(worker_state& worker, spsc_ring& ring, worker_slot& slot, std::size_t max_messages) {
        bool progressed = false;
        for (std::size_t messages = 0; messages < max_messages; ++messages) {
            if (worker.length_got < worker.length_bytes.size()) {
                const std::size_t n = ring.try_read(std::span(worker.length_bytes).subspan(worker.length_got));
                worker.length_got += n;
                progressed |= n > 0;
                if (worker.length_got < worker.length_bytes.size()) return progressed;
                std::uint64_t length = 0;
                std::memcpy(&length, worker.length_bytes.data(), sizeof length);
                if ((length & staged_message_bit) != 0) {
                    // The message waits in the worker's staging area: decode it there.
                    length &= ~staged_message_bit;
                    worker.length_got = 0;
                    progressed = true;
                    if (length + sizeof length <= slot.result_staging.size())
                        complete_chunk(worker, slot.result_staging.subspan(sizeof length, length));
                    // release: our reads of the staged bytes are done before the worker reuses them.
                    slot.result_staged.store(0, std::memory_order_release);
                    continue;  // the next message
                }
                worker.incoming.reset(static_cast<std::size_t>(length));
                worker.incoming_got = 0;
            }
            const std::size_t n = ring.try_read(std::span<std::byte>(worker.incoming).subspan(worker.incoming_got));
            worker.incoming_got += n;
            progressed |= n > 0;
            if (worker.incoming_got < worker.incoming.size()) return progressed;
            worker.length_got = 0;
            complete_chunk(worker, std::as_const(worker.incoming));
            progressed = true;
        }
        return progressed;
    }

    void complete_chunk(worker_state& worker, std::span<const std::byte> message) {
        result_header header{};
        std::memcpy(&header, message.data(), sizeof header);
        if (worker.chunks.empty() || worker.chunks.front().seq != header.seq) {
            // Cannot happen with a well-behaved worker; refuse to guess which tasks these are.
            return;
        }
        sent_chunk chunk = std::move(worker.chunks.front());
        worker.chunks.pop_front();
        --worker.writing;
        reader results(message.subspan(sizeof header));
        chunk.job->plan().record(header.count, header.elapsed_ns);
        const auto elapsed = static_cast<double>(header.elapsed_ns);
        recent_chunk_ns_ = recent_chunk_ns_ == 0 ? elapsed : 0.9 * recent_chunk_ns_ + 0.1 * elapsed;
        chunk.job->deliver(chunk.piece.first_index, chunk.piece.count, results);
        const bool finished = chunk.job->settled(chunk.piece.count);
        // Its items (perhaps a staging lease) go before the caller can wake and submit the next.
        chunk.piece.block.reset();
        if (finished) complete(chunk.job);
    }

    void complete_if_finished(const std::shared_ptr<job_base>& job) {
        if (job->finished()) complete(job);
    }

    /// A finished job: out of jobs_, then its outcome published (once).
    void complete(const std::shared_ptr<job_base>& job) {
        if (job->unfinished_slot == job_base::no_slot) return;  // completed before
        // Swap-remove from jobs_: no node to allocate or free per job.
        const std::size_t slot = std::exchange(job->unfinished_slot, job_base::no_slot);
        std::shared_ptr<job_base> done = std::move(jobs_[slot]);
        if (slot + 1 != jobs_.size()) {
            jobs_[slot] = std::move(jobs_.back());
            jobs_[slot]->unfinished_slot = slot;
        }
        jobs_.pop_back();
        done->complete();
    }

    bool handle_deaths() {
        const auto deaths = memory_.shared_header().deaths.load(std::memory_order_acquire);
        if (deaths == deaths_seen_) return false;
        deaths_seen_ = deaths;
        bool progressed = false;
        while (auto exit = server_->next_exit()) {
            on_worker_exit(*exit);
            progressed = true;
        }
        return progressed;
    }

    /// A worker is gone: keep its finished results, send its unfinished chunks
    /// again, and pin the loss on the one task it was running, which fails with
    /// WorkerLost or TaskTimeout (or is re-run while retries last).
    void on_worker_exit(const worker_exit& exit) {
        worker_state& worker = workers_[exit.slot];
        if (!worker.alive || worker.pid != exit.pid) return;
        receive_results(worker);  // results it finished before dying
        worker_slot& slot = memory_.slot(exit.slot);
        const std::uint64_t running = slot.progress.running_seq.load(std::memory_order_relaxed);
        const std::uint32_t done = slot.progress.tasks_done.load(std::memory_order_relaxed);
        const bool timed_out = worker.timed_out;

        std::vector<std::pair<std::shared_ptr<job_base>, std::size_t>> failed;  // (job, task index)
        reusable_queue<sent_chunk> lost = std::move(worker.chunks);
        for (sent_chunk& chunk : lost) {
            chunk_piece piece = std::move(chunk.piece);
            if (chunk.seq == running && done < piece.count) {
                // Tasks before `done` ran but their results died with the worker:
                // run them again. Task `done` is the one that was running.
                if (done > 0) {
                    auto [head, rest] = split_piece(piece, done, chunk.job->item_stride());
                    requeue(chunk.job, std::move(head));
                    piece = std::move(rest);
                }
                chunk_piece culprit = piece;
                if (piece.count > 1) {
                    auto [one, tail] = split_piece(piece, 1, chunk.job->item_stride());
                    culprit = std::move(one);
                    requeue(chunk.job, std::move(tail));
                }
                if (!timed_out && culprit.attempts < options_.retries) {
                    ++culprit.attempts;
                    requeue(chunk.job, std::move(culprit));
                } else {
                    failed.emplace_back(chunk.job, culprit.first_index);
                }
            } else {
                requeue(chunk.job, std::move(piece));
            }
        }

        // Replace the worker before reporting its loss, so pids() is whole when
        // a caller sees the error.
        worker.alive = false;
        memory_.slot(exit.slot).reset();
        const bool replace = !closed_seen_ || !jobs_.empty();
        if (replace) start_worker(exit.slot);

        for (auto& [job, index] : failed) {
            std::exception_ptr error;
            if (timed_out)
                error = std::make_exception_ptr(TaskTimeout("task ran longer than task_timeout (" +
                                                            std::to_string(options_.task_timeout.count()) +
                                                            " ms); its worker " + std::to_string(exit.pid) +
                                                            " was killed"));
            else
                error = std::make_exception_ptr(WorkerLost(exit.pid, exit.signal, exit.exit_code));
            job->fail(index, error);
            if (job->settled(1)) complete(job);
        }
    }

    void requeue(const std::shared_ptr<job_base>& job, chunk_piece piece) {
        job->requeue(std::move(piece));
        ready_.push_front(job);
        complete_if_finished(job);  // a cancelled job may be done now
    }

    void check_timeouts() {
        if (options_.task_timeout.count() <= 0) return;
        const std::int64_t limit = std::chrono::duration_cast<std::chrono::nanoseconds>(options_.task_timeout).count();
        const std::int64_t now = steady_now_ns();
        for (std::size_t i = 0; i < workers_.size(); ++i) {
            worker_state& worker = workers_[i];
            if (!worker.alive || worker.timed_out || worker.chunks.empty()) continue;
            const std::int64_t started = memory_.slot(i).progress.task_started_ns.load(std::memory_order_relaxed);
            if (started != 0 && now - started > limit) {
                worker.timed_out = true;
                server_->kill(worker.pid, SIGKILL);
            }
        }
    }

    /// Closing with no work left: ask each worker to exit, and the fork server to
    /// exit once they all have. Returns true when the pool thread may end: when
    /// every live worker has its exit message in full and no chunk left to finish,
    /// nothing more can come from them, and the joiner reaps the server (whose
    /// exit follows theirs) without a round trip through this thread.
    bool begin_or_finish_close() {
        bool settled = true;
        for (auto& worker : workers_) {
            if (!worker.alive) continue;
            if (!worker.exit_queued) {
                worker.exit_queued = true;
                write_pending(worker);
            }
            settled = settled && worker.chunks.empty() && worker.exit_written == exit_message_bytes;
        }
        // No worker is replaced from here on (jobs_ stays empty once closed), so
        // the server may leave as soon as its last worker has.
        if (!exit_requested_) {
            server_->request_exit(/*kill_workers=*/false);
            exit_requested_ = true;
        }
        return settled;
    }

    /// terminate(): every unfinished task fails with PoolTerminated, workers are killed.
    void shut_down_now(const std::exception_ptr& error) noexcept {
        server_->shutdown(/*kill_workers=*/true);
        for (auto& worker : workers_) {
            for (sent_chunk& chunk : worker.chunks) {
                for (std::uint32_t i = 0; i < chunk.piece.count; ++i) chunk.job->fail(chunk.piece.first_index + i, error);
                chunk.job->settled(chunk.piece.count);
            }
            worker.chunks.clear();
            worker.alive = false;
        }
        auto jobs = std::move(jobs_);
        jobs_.clear();
        {
            std::lock_guard guard(control_mutex_);
            for (auto& job : incoming_jobs_) jobs.push_back(std::move(job));
            incoming_jobs_.clear();
        }
        // Outside the lock: completing runs callbacks, which may call back into the pool.
        for (auto& job : jobs) {
            job->unfinished_slot = job_base::no_slot;
            job->fail_waiting(error);
            job->complete();
        }
    }

    /// Sleeps on the doorbell until a worker, a submitter or the fork server rings.
    /// A worker with a deep queue is not asked to ring at every result: the pool
    /// naps until about half its queue is done, so busy workers make no syscalls
    /// for the pool's sake and the pool thread leaves the cores to them. The engine
    /// is unlocked while asleep (a caller may use it: submit_and_watch), so what the
    /// wait looks at is copied out first.
    void sleep(std::unique_lock<std::mutex>& engine) {
        using namespace std::chrono;
        const std::size_t count = workers_.size();
        std::vector<wake_on>& wake = wake_on_;
        wake.assign(count, wake_on::nothing);
        double nap_ns = std::numeric_limits<double>::infinity();
        for (std::size_t i = 0; i < count; ++i) {
            const worker_state& worker = workers_[i];
            if (!worker.alive || worker.chunks.empty()) continue;
            const std::size_t shallow = std::max<std::size_t>(1, worker.depth / 2);
            // A result message already under way (larger than the ring) must be
            // drained as it comes, or it would stream at one ring per nap; and an
            // unmeasured job's first results calibrate its chunk size.
            if (worker.chunks.size() <= shallow || worker.length_got != 0 ||
                !worker.chunks.front().job->plan().measured()) {
                wake[i] = wake_on::result;
            } else {
                // Until only `shallow` chunks are left: what the chunks ahead of them should take.
                double ahead_ns = 0;
                for (std::size_t c = 0; c < worker.chunks.size() - shallow; ++c) {
                    const sent_chunk& chunk = worker.chunks[c];
                    ahead_ns += chunk.job->plan().estimated_ns(chunk.piece.count);
                }
                nap_ns = std::min(nap_ns, ahead_ns);
                // The estimate may be wrong (a few slow tasks skew it): the worker
                // also rings when it takes its last queued chunk.
                if (worker.writing == worker.chunks.size()) wake[i] = wake_on::drained;
            }
        }
        std::vector<char>& unwritten = unwritten_;  // has bytes waiting for room in its task ring
        unwritten.assign(count, 0);
        for (std::size_t i = 0; i < count; ++i) {
            const worker_state& worker = workers_[i];
            unwritten[i] = worker.alive && (worker.writing < worker.chunks.size() ||
                                            (worker.exit_queued && worker.exit_written < exit_message_bytes));
        }
        const std::uint64_t control_seen = control_seen_;
        const std::uint32_t deaths_seen = deaths_seen_;
        auto has_work = [&] {
            if (control_changes_.load(std::memory_order_acquire) != control_seen) return true;
            if (memory_.shared_header().deaths.load(std::memory_order_acquire) != deaths_seen) return true;
            for (std::size_t i = 0; i < count; ++i) {
                if (wake[i] == wake_on::result && memory_.slot(i).results->readable() > 0) return true;
                if (wake[i] == wake_on::drained && memory_.slot(i).tasks->drained()) return true;
                if (unwritten[i] && memory_.slot(i).tasks->writable() > 0) return true;
            }
            return false;
        };
        auto announce = [&] {
            for (std::size_t i = 0; i < count; ++i) {
                if (wake[i] == wake_on::result) memory_.slot(i).results->want_data();
                if (wake[i] == wake_on::drained) memory_.slot(i).tasks->want_drained();
                if (unwritten[i]) memory_.slot(i).tasks->want_space();
            }
        };
        auto deadline = steady_deadline::max();
        if (nap_ns != std::numeric_limits<double>::infinity())
            deadline = steady_clock::now() + nanoseconds(static_cast<std::int64_t>(std::clamp(nap_ns, 20e3, 5e6)));
        if (options_.task_timeout.count() > 0)
            deadline = std::min(deadline, steady_clock::now() + std::clamp<steady_clock::duration>(
                                                                    options_.task_timeout / 8, milliseconds(1),
                                                                    milliseconds(50)));
        // The fork server rings for every death but its own: while work is
        // outstanding, look at it at least once a second.
        bool outstanding = false;
        for (const worker_state& worker : workers_)
            outstanding |= worker.alive && (!worker.chunks.empty() || worker.exit_queued);
        if (outstanding) deadline = std::min(deadline, steady_clock::now() + seconds(1));
        engine.unlock();
        const bool woken = await(memory_.shared_header().doorbell, has_work, announce, deadline);
        engine.lock();
        if (!woken && outstanding) server_->check_alive();
    }

    PoolOptions options_;
    std::size_t processes_;
    pool_memory memory_;
    std::unique_ptr<fork_server> server_;
    std::shared_ptr<block_cache> job_memory_ = std::make_shared<block_cache>();  // jobs may outlive the pool

    // The engine: the pool thread's, except while it sleeps, when a caller may take
    // it to hand a task to an idle worker and collect the result (submit_and_watch).
    std::mutex engine_mutex_;
    std::vector<worker_state> workers_;
    reusable_queue<std::shared_ptr<job_base>> ready_;  // jobs that may have chunks to send, in submission order
    std::vector<std::shared_ptr<job_base>> jobs_;  // every unfinished job, at its unfinished_slot
    // sleep()'s scratch: per worker, what should wake us (its next result, or, for a
    // worker with a deep queue, its taking the last queued chunk).
    enum class wake_on : std::uint8_t { nothing, result, drained };
    std::vector<wake_on> wake_on_;
    std::vector<char> unwritten_;
    double recent_chunk_ns_ = 0;  // moving average of chunk run times, all jobs
    std::vector<std::shared_ptr<job_base>> absorbed_jobs_;   // absorb_control's, empty between calls
    std::vector<std::shared_ptr<job_base>> absorbed_ready_;  // likewise
    std::uint64_t control_seen_ = 0;
    std::uint32_t deaths_seen_ = 0;
    bool closed_seen_ = false;
    bool terminating_seen_ = false;
    bool exit_requested_ = false;  // the fork server was asked to exit once its workers have

    // Shared with the callers' threads.
    mutable std::mutex control_mutex_;
    std::vector<std::shared_ptr<job_base>> incoming_jobs_;
    std::vector<std::shared_ptr<job_base>> incoming_ready_;
    std::vector<pid_t> pids_;
    bool pids_final_ = false;  // pids_ holds the first workers' pids (or never will)
    mutable std::condition_variable pids_known_;
    std::exception_ptr engine_error_;  // why the pool thread failed, for later submitters
    bool closed_ = false;
    bool terminating_ = false;
    std::map<std::size_t, std::function<void()>> drainers_;
    std::size_t last_drainer_ = 0;
    std::atomic<std::uint64_t> control_changes_{0};

    std::mutex join_mutex_;
    std::thread thread_;
    std::thread::id pool_thread_id_;
};

}  // namespace mpp::detail
