// Python's multiprocessing synchronization primitives for every process of an mpp tree:
// Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition, Barrier. Handles are cheap copies
// of one object in the shared segment. Death-proof: a lock whose holder died reports BrokenLock
// once and recovers, a dead waiter leaves no trace, and a Barrier breaks when a waiting party dies.
#pragma once

#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "mpp/detail/futex.hpp"
#include "mpp/detail/robust_mutex.hpp"
#include "mpp/detail/segment.hpp"
#include "mpp/detail/shared_ref.hpp"
#include "mpp/errors.hpp"
#include "mpp/serializer.hpp"

namespace mpp {

namespace detail {

inline pid_t& thread_id_cache() noexcept {
    thread_local pid_t id = 0;
    return id;
}
inline void forget_thread_id_in_child() noexcept { thread_id_cache() = 0; }

/// The kernel's id of the calling thread: unique among live threads of every process, so it
/// names a lock holder across the tree. Cached per thread (gettid is a syscall); a fork handler
/// forgets the cache in the child, whose only thread has a new id.
inline pid_t this_thread_id() noexcept {
    pid_t& id = thread_id_cache();
    if (id == 0) [[unlikely]] {
        // Registered before the first id is cached, and inherited by forks, so no child keeps a stale id.
        static const int registered = ::pthread_atfork(nullptr, nullptr, &forget_thread_id_in_child);
        (void)registered;
        id = static_cast<pid_t>(::syscall(SYS_gettid));
    }
    return id;
}

/// Converts any clock's time point to a steady deadline (TimedLockable accepts every clock).
template <class Clock, class Duration>
steady_deadline to_steady_deadline(std::chrono::time_point<Clock, Duration> when) {
    if constexpr (std::is_same_v<Clock, std::chrono::steady_clock>) {
        return std::chrono::time_point_cast<std::chrono::steady_clock::duration>(when);
    } else {
        return deadline_after(when - Clock::now());
    }
}

/// Sleeps while `word` holds `expected`, at most until `deadline` (max() = forever).
/// Returns false only when the deadline passed. May return spuriously.
inline bool sleep_while_equal(const futex_word& word, std::uint32_t expected, steady_deadline deadline) noexcept {
    if (deadline == steady_deadline::max()) {
        futex_wait(word, expected);
        return true;
    }
    return futex_wait_until(word, expected, deadline);
}

/// Spins briefly, watching `word` leave `expected`. True if it did.
inline bool spin_while_equal(const futex_word& word, std::uint32_t expected) noexcept {
    return spin_then_check([&] { return word.load(std::memory_order_acquire) != expected; });
}

/// A zero timeout (Python's acquire(timeout=0)) answers at once instead of spinning first.
inline bool already_passed(steady_deadline deadline) noexcept {
    return deadline != steady_deadline::max() && deadline <= std::chrono::steady_clock::now();
}

struct lock_state {
    robust_mutex mutex;
    // Thread id of the holder, 0 when free. Written only by the thread holding `mutex` (so a thread
    // that reads its own id knows it holds the lock); read by others only to refuse their unlock().
    std::atomic<pid_t> owner{0};
    static_assert(std::atomic<pid_t>::is_always_lock_free);
};

struct rlock_state : lock_state {
    std::uint32_t depth = 0;  // acquisitions by the holder; touched only while holding `mutex`
};

struct semaphore_state {
    semaphore_state(std::uint32_t initial, std::uint32_t maximum) : permits(initial), bound(maximum) {}
    futex_word permits;          // the semaphore's value; waiters sleep on it while it is 0
    futex_word sleepers{0};      // waiters announced asleep; release() only makes a syscall when > 0
    const std::uint32_t bound;   // release() past it is an error (UINT32_MAX for a plain Semaphore)
};

struct event_state {
    // Bit 0: the flag. Bits 1..31: how many times set() raised it, so a waiter woken by a set()
    // that a clear() has already undone still knows it was signalled (as Python's wait() does).
    futex_word word{0};
    futex_word sleepers{0};
};

struct condition_state {
    futex_word sequence{0};  // bumped by every notify; a waiter sleeps until it moves
    futex_word sleepers{0};
};

/// Is `pid` a live process? A zombie (killed but not yet reaped) counts as dead.
inline bool process_alive(pid_t pid) {
    if (pid <= 0) return false;
    if (::kill(pid, 0) == -1 && errno == ESRCH) return false;
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string text;
    if (!stat || !std::getline(stat, text)) return true;  // no procfs: trust kill()
    const auto name_end = text.rfind(')');
    if (name_end == std::string::npos || name_end + 2 >= text.size()) return true;
    const char state = text[name_end + 2];
    return state != 'Z' && state != 'X';
}

struct barrier_state {
    explicit barrier_state(std::uint32_t party_count)
        : parties(party_count),
          waiter_pids(static_cast<pid_t*>(shared_segment::instance().allocate(sizeof(pid_t) * party_count, alignof(pid_t)))) {}
    ~barrier_state() { shared_segment::instance().deallocate(waiter_pids); }
    barrier_state(const barrier_state&) = delete;
    barrier_state& operator=(const barrier_state&) = delete;

    /// Ends the current generation as broken and wakes its waiters. Call holding `mutex`.
    void break_generation(bool stays_broken) noexcept {
        broken = stays_broken;
        arrived = 0;
        outcomes = (outcomes << 1) | 1u;
        generation.fetch_add(1, std::memory_order_release);
        futex_wake(generation);
    }

    /// Did the generation `mine` end broken? Call holding `mutex`, after it ended.
    bool ended_broken(std::uint32_t mine) const noexcept {
        const std::uint32_t since = generation.load(std::memory_order_relaxed) - mine - 1;
        // Beyond the remembered history the generation ended long ago; by far most likely by tripping.
        return since < 64 && ((outcomes >> since) & 1u) != 0;
    }

    robust_mutex mutex;  // guards everything below except the futex word's sleeping
    // Bumped when a generation ends (tripped, broken or reset); waiters sleep on it. Every field is
    // written in an order that leaves the state valid if the writer dies between two steps.
    futex_word generation{0};
    const std::uint32_t parties;
    std::uint32_t arrived = 0;     // parties waiting in the current generation
    bool broken = false;
    std::uint64_t outcomes = 0;    // bit i: the generation that ended i transitions ago broke
    pid_t* waiter_pids;            // [0, arrived): the waiting parties' pids (segment memory)
};

inline void save_offset(writer& out, std::uint64_t offset) { out.write(&offset, sizeof offset); }

/// Adopts the reference a message holds, after checking the offset names segment memory.
template <class State>
shared_ref<State> load_shared_ref(reader& in, const char* type) {
    std::uint64_t offset = 0;
    std::memcpy(&offset, in.read(sizeof offset).data(), sizeof offset);
    auto& segment = shared_segment::instance();
    if (offset == 0 || !segment.contains(static_cast<char*>(segment.at(0)) + offset))
        throw SerializationError(std::string("mpp: corrupt ") + type + " handle: offset outside the shared segment");
    return shared_ref<State>::adopt_reference(offset);
}

}  // namespace detail

namespace detail {

/// The timed and Python-named members Lock and RLock share, written once in terms of the
/// lock's own lock(), unlock() and lock_until(deadline).
template <class Derived>
class lock_names {
public:
    template <class Rep, class Period>
    bool try_lock_for(std::chrono::duration<Rep, Period> timeout) const {
        return self().lock_until(deadline_after(timeout));
    }
    template <class Clock, class Duration>
    bool try_lock_until(std::chrono::time_point<Clock, Duration> when) const {
        return self().lock_until(to_steady_deadline(when));
    }

    void acquire() const { self().lock(); }
    template <class Rep, class Period>
    bool acquire(std::chrono::duration<Rep, Period> timeout) const {
        return try_lock_for(timeout);
    }
    void release() const { self().unlock(); }

    /// True when the calling thread holds the lock.
    bool held_by_this_thread() const noexcept {
        return self().state_->owner.load(std::memory_order_relaxed) == this_thread_id();
    }

    /// Handles are equal when they name the same shared lock.
    friend bool operator==(const Derived& a, const Derived& b) noexcept { return same_lock(a, b); }

private:
    const Derived& self() const noexcept { return static_cast<const Derived&>(*this); }
    static bool same_lock(const Derived& a, const Derived& b) noexcept { return a.state_ == b.state_; }
};

}  // namespace detail

/// A lock shared by every process of the tree (Lockable and TimedLockable, so std::scoped_lock
/// and std::unique_lock work). Not recursive: lock() by its holder throws std::logic_error.
/// Only the holder may release it (unlike Python's multiprocessing.Lock).
/// Every acquiring call that throws BrokenLock has taken the lock: the previous holder died
/// holding it, so the state it protects may be half-updated; repair it, then unlock().
class Lock : public detail::lock_names<Lock> {
public:
    Lock() : state_(detail::shared_ref<detail::lock_state>::make()) {}
    Lock(const Lock&) = default;  // a copy is the same lock; no move, so no handle is ever empty
    Lock& operator=(const Lock&) = default;

    void lock() const {
        const pid_t me = detail::this_thread_id();
        if (state_->owner.load(std::memory_order_relaxed) == me) [[unlikely]] {
            // Either we hold it (relocking would deadlock forever) or a dead thread with our recycled id does.
            const auto status = state_->mutex.try_lock();
            if (status == detail::lock_status::timed_out)
                throw std::logic_error("mpp::Lock::lock: this thread already holds the lock (use RLock to re-enter)");
            return take(status, me);
        }
        take(state_->mutex.lock(), me);
    }
    bool try_lock() const {
        const auto status = state_->mutex.try_lock();
        if (status == detail::lock_status::timed_out) return false;
        take(status, detail::this_thread_id());
        return true;
    }
    /// std::logic_error unless the calling thread holds the lock.
    void unlock() const {
        if (state_->owner.load(std::memory_order_relaxed) != detail::this_thread_id())
            throw std::logic_error("mpp::Lock::unlock: the calling thread does not hold this lock");
        state_->owner.store(0, std::memory_order_relaxed);
        state_->mutex.unlock();
    }

private:
    friend struct codec<Lock>;
    friend class detail::lock_names<Lock>;
    explicit Lock(detail::shared_ref<detail::lock_state> state) : state_(std::move(state)) {}

    bool lock_until(detail::steady_deadline deadline) const {
        const auto status = state_->mutex.lock_until(deadline);
        if (status == detail::lock_status::timed_out) return false;
        take(status, detail::this_thread_id());
        return true;
    }
    void take(detail::lock_status status, pid_t me) const {
        state_->owner.store(me, std::memory_order_relaxed);
        if (status == detail::lock_status::owner_died) [[unlikely]]
            throw BrokenLock("mpp::Lock: the previous holder died while holding the lock; you now hold it "
                             "(repair the state it guards, then unlock())");
    }

    detail::shared_ref<detail::lock_state> state_;
};

/// A recursive lock shared by every process of the tree: its holder (one thread of one process)
/// may acquire it again, and must release it as many times. Otherwise as Lock.
class RLock : public detail::lock_names<RLock> {
public:
    RLock() : state_(detail::shared_ref<detail::rlock_state>::make()) {}
    RLock(const RLock&) = default;
    RLock& operator=(const RLock&) = default;

    void lock() const {
        const pid_t me = detail::this_thread_id();
        if (state_->owner.load(std::memory_order_relaxed) == me) {
            ++state_->depth;
            return;
        }
        take(state_->mutex.lock(), me);
    }
    bool try_lock() const {
        const pid_t me = detail::this_thread_id();
        if (state_->owner.load(std::memory_order_relaxed) == me) {
            ++state_->depth;
            return true;
        }
        const auto status = state_->mutex.try_lock();
        if (status == detail::lock_status::timed_out) return false;
        take(status, me);
        return true;
    }
    /// Releases one level; the last one frees the lock. std::logic_error unless this thread holds it.
    void unlock() const {
        if (state_->owner.load(std::memory_order_relaxed) != detail::this_thread_id())
            throw std::logic_error("mpp::RLock::unlock: the calling thread does not hold this lock");
        if (--state_->depth != 0) return;
        state_->owner.store(0, std::memory_order_relaxed);
        state_->mutex.unlock();
    }

private:
    friend struct codec<RLock>;
    friend class detail::lock_names<RLock>;
    explicit RLock(detail::shared_ref<detail::rlock_state> state) : state_(std::move(state)) {}

    bool lock_until(detail::steady_deadline deadline) const {
        const pid_t me = detail::this_thread_id();
        if (state_->owner.load(std::memory_order_relaxed) == me) {
            ++state_->depth;
            return true;
        }
        const auto status = state_->mutex.lock_until(deadline);
        if (status == detail::lock_status::timed_out) return false;
        take(status, me);
        return true;
    }
    void take(detail::lock_status status, pid_t me) const {
        state_->owner.store(me, std::memory_order_relaxed);
        state_->depth = 1;  // a dead holder's depth died with it
        if (status == detail::lock_status::owner_died) [[unlikely]]
            throw BrokenLock("mpp::RLock: the previous holder died while holding the lock; you now hold it "
                             "(repair the state it guards, then unlock())");
    }

    detail::shared_ref<detail::rlock_state> state_;
};

class BoundedSemaphore;

/// A counting semaphore shared by every process of the tree. acquire() takes a permit, sleeping
/// while there is none; release() returns one (from any process or thread).
class Semaphore {
public:
    /// std::invalid_argument if value < 0.
    explicit Semaphore(int value = 1) : Semaphore(value, std::numeric_limits<std::uint32_t>::max()) {}
    Semaphore(const Semaphore&) = default;
    Semaphore& operator=(const Semaphore&) = default;

    void acquire() const { acquire_until(detail::steady_deadline::max()); }
    /// False if no permit came within `timeout`.
    template <class Rep, class Period>
    bool acquire(std::chrono::duration<Rep, Period> timeout) const {
        return acquire_until(detail::deadline_after(timeout));
    }
    /// Takes a permit only if one is free now.
    bool try_acquire() const { return take_permit(); }

    /// Returns a permit. std::logic_error for a BoundedSemaphore already at its initial value.
    void release() const {
        auto& s = *state_;
        std::uint32_t permits = s.permits.load(std::memory_order_relaxed);
        do {
            if (permits >= s.bound)
                throw std::logic_error(s.bound == std::numeric_limits<std::uint32_t>::max()
                                           ? "mpp::Semaphore::release: the semaphore's value would overflow"
                                           : "mpp::BoundedSemaphore::release: released more times than acquired");
        } while (!s.permits.compare_exchange_weak(permits, permits + 1, std::memory_order_seq_cst));
        // seq_cst pairs with the waiter's seq_cst sleepers increment: either it sees the permit
        // before sleeping (the futex value changed), or we see it asleep and wake it.
        if (s.sleepers.load(std::memory_order_seq_cst) != 0) detail::futex_wake(s.permits, 1);
    }

    /// The number of free permits now (Python's get_value()).
    int value() const { return static_cast<int>(state_->permits.load(std::memory_order_relaxed)); }

    friend bool operator==(const Semaphore& a, const Semaphore& b) noexcept { return a.state_ == b.state_; }

protected:
    Semaphore(int value, std::uint32_t bound) : state_(make_state(value, bound)) {}
    explicit Semaphore(detail::shared_ref<detail::semaphore_state> state) : state_(std::move(state)) {}

private:
    friend struct codec<Semaphore>;
    friend struct codec<BoundedSemaphore>;

    static detail::shared_ref<detail::semaphore_state> make_state(int value, std::uint32_t bound) {
        if (value < 0) throw std::invalid_argument("mpp::Semaphore: the initial value must be >= 0");
        const auto initial = static_cast<std::uint32_t>(value);
        return detail::shared_ref<detail::semaphore_state>::make(initial, bound == 0 ? initial : bound);
    }

    bool take_permit() const {
        auto& permits = state_->permits;
        std::uint32_t available = permits.load(std::memory_order_relaxed);
        while (available != 0) {
            if (permits.compare_exchange_weak(available, available - 1, std::memory_order_acquire)) return true;
        }
        return false;
    }

    bool acquire_until(detail::steady_deadline deadline) const {
        auto& s = *state_;
        for (;;) {
            if (detail::already_passed(deadline)) return take_permit();
            if (detail::spin_then_check([&] { return take_permit(); })) return true;
            s.sleepers.fetch_add(1, std::memory_order_seq_cst);
            bool in_time = true;
            while (s.permits.load(std::memory_order_seq_cst) == 0 && in_time)
                in_time = detail::sleep_while_equal(s.permits, 0, deadline);
            s.sleepers.fetch_sub(1, std::memory_order_relaxed);
            if (!in_time) return take_permit();
        }
    }

    detail::shared_ref<detail::semaphore_state> state_;
};

/// A Semaphore whose value may never exceed its initial value: an extra release() is a bug and
/// throws std::logic_error (Python raises ValueError).
class BoundedSemaphore : public Semaphore {
public:
    explicit BoundedSemaphore(int value = 1) : Semaphore(value, 0) {}
    BoundedSemaphore(const BoundedSemaphore&) = default;
    BoundedSemaphore& operator=(const BoundedSemaphore&) = default;

private:
    friend struct codec<BoundedSemaphore>;
    explicit BoundedSemaphore(detail::shared_ref<detail::semaphore_state> state) : Semaphore(std::move(state)) {}
};

/// A flag shared by every process of the tree: set() wakes every waiter; wait() sleeps until set.
class Event {
public:
    Event() : state_(detail::shared_ref<detail::event_state>::make()) {}
    Event(const Event&) = default;
    Event& operator=(const Event&) = default;

    void set() const {
        auto& s = *state_;
        std::uint32_t word = s.word.load(std::memory_order_relaxed);
        do {
            if (word & 1u) return;
        } while (!s.word.compare_exchange_weak(word, (word + 2u) | 1u, std::memory_order_seq_cst));
        if (s.sleepers.load(std::memory_order_seq_cst) != 0) detail::futex_wake(s.word);
    }
    void clear() const { state_->word.fetch_and(~1u, std::memory_order_seq_cst); }
    bool is_set() const { return (state_->word.load(std::memory_order_acquire) & 1u) != 0; }

    /// Returns once the flag is set (or was set since the call began, even if cleared again).
    void wait() const { wait_until(detail::steady_deadline::max()); }
    /// As wait(), giving up after `timeout`: true if the flag was set, false on timeout.
    template <class Rep, class Period>
    bool wait(std::chrono::duration<Rep, Period> timeout) const {
        return wait_until(detail::deadline_after(timeout));
    }

    friend bool operator==(const Event& a, const Event& b) noexcept { return a.state_ == b.state_; }

private:
    friend struct codec<Event>;
    explicit Event(detail::shared_ref<detail::event_state> state) : state_(std::move(state)) {}

    bool wait_until(detail::steady_deadline deadline) const {
        auto& s = *state_;
        const std::uint32_t seen = s.word.load(std::memory_order_acquire);
        if (seen & 1u) return true;
        if (detail::already_passed(deadline)) return false;
        // Any change of the word from a cleared `seen` is a set(): clear() alone cannot change it.
        if (detail::spin_while_equal(s.word, seen)) return true;
        s.sleepers.fetch_add(1, std::memory_order_seq_cst);
        bool in_time = true;
        while (s.word.load(std::memory_order_seq_cst) == seen && in_time)
            in_time = detail::sleep_while_equal(s.word, seen, deadline);
        s.sleepers.fetch_sub(1, std::memory_order_relaxed);
        return s.word.load(std::memory_order_acquire) != seen;
    }

    detail::shared_ref<detail::event_state> state_;
};

/// A condition variable shared by every process of the tree, bound to a Lock (a new one by
/// default). Built on a futex sequence number, not pthread_cond, so a waiter killed mid-wait
/// cannot wedge anyone. Like std::condition_variable, wait() may return spuriously: loop on
/// your predicate, or use wait_for(pred). wait and notify require holding the lock
/// (std::logic_error otherwise, as Python raises RuntimeError).
class Condition {
public:
    explicit Condition(Lock lock = {}) : lock_(std::move(lock)), state_(detail::shared_ref<detail::condition_state>::make()) {}
    Condition(const Condition&) = default;
    Condition& operator=(const Condition&) = default;

    void lock() const { lock_.lock(); }
    bool try_lock() const { return lock_.try_lock(); }
    void unlock() const { lock_.unlock(); }
    void acquire() const { lock_.acquire(); }
    template <class Rep, class Period>
    bool acquire(std::chrono::duration<Rep, Period> timeout) const {
        return lock_.acquire(timeout);
    }
    void release() const { lock_.release(); }
    /// The Lock this condition waits with.
    const Lock& get_lock() const noexcept { return lock_; }

    /// Releases the lock, sleeps until notified, retakes the lock.
    void wait() const { wait_until(detail::steady_deadline::max()); }
    /// As wait(); false if `timeout` passed without a notification.
    template <class Rep, class Period>
    bool wait(std::chrono::duration<Rep, Period> timeout) const {
        return wait_until(detail::deadline_after(timeout));
    }

    /// Waits until pred() holds (checked under the lock); returns true.
    template <class Predicate>
    bool wait_for(Predicate pred) const {
        while (!pred()) wait();
        return true;
    }
    /// Waits until pred() holds or `timeout` passes; returns the last pred() (Python's wait_for).
    template <class Predicate, class Rep, class Period>
    bool wait_for(Predicate pred, std::chrono::duration<Rep, Period> timeout) const {
        const auto deadline = detail::deadline_after(timeout);
        bool result = pred();
        while (!result) {
            if (!wait_until(deadline)) return pred();
            result = pred();
        }
        return result;
    }

    /// Wakes up to n waiters (possibly a few more: see the class comment).
    void notify(int n = 1) const {
        if (!lock_.held_by_this_thread())
            throw std::logic_error("mpp::Condition::notify: the calling thread must hold the condition's lock");
        if (n <= 0) return;
        auto& s = *state_;
        s.sequence.fetch_add(1, std::memory_order_seq_cst);
        if (s.sleepers.load(std::memory_order_seq_cst) != 0) detail::futex_wake(s.sequence, n);
    }
    void notify_all() const { notify(INT_MAX); }

private:
    friend struct codec<Condition>;
    Condition(Lock lock, detail::shared_ref<detail::condition_state> state) : lock_(std::move(lock)), state_(std::move(state)) {}

    bool wait_until(detail::steady_deadline deadline) const {
        if (!lock_.held_by_this_thread())
            throw std::logic_error("mpp::Condition::wait: the calling thread must hold the condition's lock");
        auto& s = *state_;
        // Read under the lock: a notify after this point (which needs the lock) moves the sequence.
        const std::uint32_t seen = s.sequence.load(std::memory_order_seq_cst);
        s.sleepers.fetch_add(1, std::memory_order_seq_cst);
        lock_.unlock();
        bool notified = detail::spin_while_equal(s.sequence, seen);
        while (!notified) {
            if (!detail::sleep_while_equal(s.sequence, seen, deadline)) break;
            notified = s.sequence.load(std::memory_order_seq_cst) != seen;
        }
        notified = notified || s.sequence.load(std::memory_order_seq_cst) != seen;
        s.sleepers.fetch_sub(1, std::memory_order_relaxed);
        lock_.lock();  // a BrokenLock from here leaves the lock held, as every acquiring call does
        return notified;
    }

    Lock lock_;
    detail::shared_ref<detail::condition_state> state_;
};

/// A barrier for a fixed number of parties across processes. wait() returns the arrival index
/// (0 .. parties-1, each once per round, as in Python). BrokenBarrier is thrown to every waiter
/// when the barrier is aborted, reset while parties wait, a wait times out (which breaks it, as in
/// Python), or a waiting party's process dies (checked by sleeping waiters every ~50 ms).
/// A broken barrier stays broken until reset().
class Barrier {
public:
    /// std::invalid_argument unless 0 < parties < 2^32.
    explicit Barrier(std::size_t parties) : state_(make_state(parties)) {}
    Barrier(const Barrier&) = default;
    Barrier& operator=(const Barrier&) = default;

    std::size_t wait() const { return wait_until(detail::steady_deadline::max()); }
    template <class Rep, class Period>
    std::size_t wait(std::chrono::duration<Rep, Period> timeout) const {
        return wait_until(detail::deadline_after(timeout));
    }

    /// Breaks the barrier: current and future waiters get BrokenBarrier until reset().
    void abort() const {
        auto& s = *state_;
        detail::robust_guard guard(s.mutex);
        if (!s.broken) s.break_generation(true);
    }
    /// Back to the empty, unbroken state; parties waiting now get BrokenBarrier.
    void reset() const {
        auto& s = *state_;
        detail::robust_guard guard(s.mutex);
        if (s.arrived != 0) s.break_generation(false);
        s.broken = false;
    }

    std::size_t parties() const noexcept { return state_->parties; }
    std::size_t n_waiting() const {
        auto& s = *state_;
        detail::robust_guard guard(s.mutex);
        return s.arrived;
    }
    bool broken() const {
        auto& s = *state_;
        detail::robust_guard guard(s.mutex);
        return s.broken;
    }

    friend bool operator==(const Barrier& a, const Barrier& b) noexcept { return a.state_ == b.state_; }

private:
    friend struct codec<Barrier>;
    explicit Barrier(detail::shared_ref<detail::barrier_state> state) : state_(std::move(state)) {}

    static constexpr auto liveness_interval = std::chrono::milliseconds(50);

    static detail::shared_ref<detail::barrier_state> make_state(std::size_t parties) {
        if (parties == 0 || parties > std::numeric_limits<std::uint32_t>::max())
            throw std::invalid_argument("mpp::Barrier: parties must be between 1 and 2^32-1");
        return detail::shared_ref<detail::barrier_state>::make(static_cast<std::uint32_t>(parties));
    }

    std::size_t wait_until(detail::steady_deadline deadline) const {
        auto& s = *state_;
        std::uint32_t mine = 0;
        std::size_t index = 0;
        {
            detail::robust_guard guard(s.mutex);
            if (s.broken) throw BrokenBarrier("mpp::Barrier::wait: the barrier is broken; reset() it first");
            mine = s.generation.load(std::memory_order_relaxed);
            index = s.arrived;
            s.waiter_pids[index] = ::getpid();  // before counting it, so no half-registered party exists
            s.arrived = static_cast<std::uint32_t>(index + 1);
            if (s.arrived == s.parties) {
                s.arrived = 0;
                s.outcomes <<= 1;  // this generation tripped
                s.generation.fetch_add(1, std::memory_order_release);
                detail::futex_wake(s.generation);
                return index;
            }
        }
        if (detail::spin_while_equal(s.generation, mine)) return outcome(mine, index);
        auto next_check = std::chrono::steady_clock::now() + liveness_interval;
        for (;;) {
            detail::sleep_while_equal(s.generation, mine, std::min(deadline, next_check));
            if (s.generation.load(std::memory_order_acquire) != mine) return outcome(mine, index);
            const auto now = std::chrono::steady_clock::now();
            if (now >= deadline) {
                detail::robust_guard guard(s.mutex);
                if (s.generation.load(std::memory_order_relaxed) != mine) return outcome_locked(mine, index);
                s.break_generation(true);
                throw BrokenBarrier("mpp::Barrier::wait: timed out; the barrier is now broken");
            }
            if (now >= next_check) {
                next_check = now + liveness_interval;
                if (const pid_t dead = find_dead_waiter(mine)) {
                    throw BrokenBarrier("mpp::Barrier::wait: party process " + std::to_string(dead) +
                                        " died while waiting; the barrier is now broken");
                }
            }
        }
    }

    /// Breaks the generation if one of its waiting parties died; returns that pid (0 if none).
    pid_t find_dead_waiter(std::uint32_t mine) const {
        auto& s = *state_;
        // Copy the pids out under the lock, but probe /proc without holding it.
        std::vector<pid_t> waiting;
        {
            detail::robust_guard guard(s.mutex);
            if (s.generation.load(std::memory_order_relaxed) != mine) return 0;
            waiting.assign(s.waiter_pids, s.waiter_pids + s.arrived);
        }
        const pid_t self = ::getpid();
        for (pid_t pid : waiting) {
            if (pid == self || detail::process_alive(pid)) continue;
            detail::robust_guard guard(s.mutex);
            if (s.generation.load(std::memory_order_relaxed) != mine) return 0;  // ended meanwhile: let outcome() tell
            s.break_generation(true);
            return pid;
        }
        return 0;
    }

    std::size_t outcome(std::uint32_t mine, std::size_t index) const {
        detail::robust_guard guard(state_->mutex);
        return outcome_locked(mine, index);
    }
    std::size_t outcome_locked(std::uint32_t mine, std::size_t index) const {
        if (state_->ended_broken(mine))
            throw BrokenBarrier("mpp::Barrier::wait: the barrier was broken (aborted, reset, timed out, or a party died)");
        return index;
    }

    detail::shared_ref<detail::barrier_state> state_;
};

// Handles travel as the segment offset of their shared object; the message owns one reference
// until it is decoded, so the object outlives the sender's handles.
template <>
struct codec<Lock> {
    static void save(writer& out, const Lock& lock) { detail::save_offset(out, lock.state_.export_reference()); }
    static Lock load(reader& in) { return Lock(detail::load_shared_ref<detail::lock_state>(in, "Lock")); }
};
template <>
struct codec<RLock> {
    static void save(writer& out, const RLock& lock) { detail::save_offset(out, lock.state_.export_reference()); }
    static RLock load(reader& in) { return RLock(detail::load_shared_ref<detail::rlock_state>(in, "RLock")); }
};
template <>
struct codec<Semaphore> {
    static void save(writer& out, const Semaphore& semaphore) {
        detail::save_offset(out, semaphore.state_.export_reference());
    }
    static Semaphore load(reader& in) {
        return Semaphore(detail::load_shared_ref<detail::semaphore_state>(in, "Semaphore"));
    }
};
template <>
struct codec<BoundedSemaphore> {
    static void save(writer& out, const BoundedSemaphore& semaphore) {
        detail::save_offset(out, semaphore.state_.export_reference());
    }
    static BoundedSemaphore load(reader& in) {
        return BoundedSemaphore(detail::load_shared_ref<detail::semaphore_state>(in, "BoundedSemaphore"));
    }
};
template <>
struct codec<Event> {
    static void save(writer& out, const Event& event) { detail::save_offset(out, event.state_.export_reference()); }
    static Event load(reader& in) { return Event(detail::load_shared_ref<detail::event_state>(in, "Event")); }
};
template <>
struct codec<Condition> {
    static void save(writer& out, const Condition& condition) {
        codec<Lock>::save(out, condition.lock_);
        detail::save_offset(out, condition.state_.export_reference());
    }
    static Condition load(reader& in) {
        Lock lock = codec<Lock>::load(in);
        return Condition(std::move(lock), detail::load_shared_ref<detail::condition_state>(in, "Condition"));
    }
};
template <>
struct codec<Barrier> {
    static void save(writer& out, const Barrier& barrier) { detail::save_offset(out, barrier.state_.export_reference()); }
    static Barrier load(reader& in) { return Barrier(detail::load_shared_ref<detail::barrier_state>(in, "Barrier")); }
};

}  // namespace mpp
