// Tests for mpp/sync.hpp: Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition and Barrier
// across processes, including holders and waiters that die, timeouts, misuse, and memory reuse.
#include <mpp/process.hpp>
#include <mpp/serializer.hpp>
#include <mpp/sync.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <tuple>
#include <vector>

namespace {

using namespace std::chrono_literals;

/// Shared memory a test's children write into (freed at scope exit).
template <class T>
struct shared_cell {
    template <class... Args>
    explicit shared_cell(Args&&... args)
        : value(mpp::detail::shared_segment::instance().create<T>(std::forward<Args>(args)...)) {}
    ~shared_cell() { mpp::detail::shared_segment::instance().destroy(value); }
    shared_cell(const shared_cell&) = delete;
    shared_cell& operator=(const shared_cell&) = delete;
    T* operator->() const { return value; }
    T& operator*() const { return *value; }
    T* value;
};

/// Polls `done` (a hang guard: generous, never a timing assertion).
template <class Predicate>
bool eventually(Predicate done, std::chrono::seconds limit = 60s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(1ms);
    }
    return true;
}

bool no_child_left_to_reap() {
    errno = 0;
    return ::waitpid(-1, nullptr, WNOHANG) == -1 && errno == ECHILD;
}

}  // namespace

// ---------------------------------------------------------------- Lock

TEST_CASE("a Lock-protected counter incremented by 4 processes is exact", "[lock]") {
    mpp::Lock lock;
    shared_cell<long> counter(0L);  // a plain long: only the lock makes += safe
    constexpr int per_process = 5000;
    std::vector<mpp::Process> workers;
    for (int i = 0; i < 4; ++i) {
        workers.emplace_back(
            [lock, &counter] {
                for (int n = 0; n < per_process; ++n) {
                    std::scoped_lock guard(lock);
                    volatile long* value = counter.value;
                    *value = *value + 1;
                }
            });
    }
    for (auto& w : workers) w.start();
    for (auto& w : workers) w.join();
    for (auto& w : workers) CHECK(w.exitcode() == 0);
    CHECK(*counter == 4 * per_process);
}

TEST_CASE("a Lock held by another process makes try_lock fail and timed acquires time out", "[lock]") {
    mpp::Lock lock;
    mpp::Event locked, release;
    mpp::Process holder([=] {
        lock.acquire();
        locked.set();
        release.wait();
        lock.release();
    });
    holder.start();
    REQUIRE(locked.wait(60s));
    CHECK_FALSE(lock.try_lock());
    CHECK_FALSE(lock.try_lock_for(20ms));
    CHECK_FALSE(lock.acquire(0ms));
    CHECK_FALSE(lock.try_lock_until(std::chrono::system_clock::now() + 20ms));  // any clock works
    CHECK_FALSE(lock.try_lock_until(std::chrono::steady_clock::now() + 20ms));
    release.set();
    CHECK(lock.try_lock_for(60s));  // acquired once the holder lets go
    lock.unlock();
    holder.join();
    CHECK(holder.exitcode() == 0);
}

TEST_CASE("a Lock works with std::scoped_lock and std::unique_lock between threads", "[lock]") {
    mpp::Lock lock;
    long counter = 0;
    auto work = [&] {
        for (int i = 0; i < 20000; ++i) {
            std::scoped_lock guard(lock);
            ++counter;
        }
    };
    std::thread a(work), b(work);
    a.join();
    b.join();
    CHECK(counter == 40000);
    std::unique_lock guard(lock, std::defer_lock);
    CHECK(guard.try_lock_for(1s));
    CHECK(guard.owns_lock());
}

TEST_CASE("only the holder may release a Lock, and relocking it by its holder is refused", "[lock]") {
    mpp::Lock lock;
    CHECK_THROWS_AS(lock.unlock(), std::logic_error);  // not held at all
    lock.lock();
    CHECK(lock.held_by_this_thread());
    CHECK_THROWS_AS(lock.lock(), std::logic_error);    // would deadlock forever
    CHECK_FALSE(lock.try_lock());
    bool other_thread_refused = false;
    std::thread other([&] {
        try {
            lock.release();
        } catch (const std::logic_error&) {
            other_thread_refused = true;
        }
    });
    other.join();
    CHECK(other_thread_refused);
    shared_cell<std::atomic<int>> child_refused(0);
    mpp::Process stranger([&] {
        try {
            lock.unlock();
        } catch (const std::logic_error&) {
            child_refused->store(1);
        }
    });
    stranger.start();
    stranger.join();
    CHECK(child_refused->load() == 1);
    lock.unlock();
    CHECK_FALSE(lock.held_by_this_thread());
}

TEST_CASE("a process that dies holding a Lock makes the next lock throw BrokenLock once, holding it", "[lock][death]") {
    mpp::Lock lock;
    SECTION("the holder leaves through _exit") {
        mpp::Process holder([=] {
            lock.lock();
            ::_exit(0);
        });
        holder.start();
        holder.join();
    }
    SECTION("the holder is killed by SIGKILL") {
        mpp::Event locked;
        mpp::Process holder([=] {
            lock.lock();
            locked.set();
            ::pause();
        });
        holder.start();
        REQUIRE(locked.wait(60s));
        holder.kill();
        holder.join();
        CHECK(holder.exitcode() == -SIGKILL);
    }
    CHECK_THROWS_AS(lock.lock(), mpp::BrokenLock);
    CHECK(lock.held_by_this_thread());  // the throwing lock() took the lock
    CHECK_FALSE(lock.try_lock());
    lock.unlock();
    // Reported once: from now on it is an ordinary lock again.
    CHECK_NOTHROW(lock.lock());
    lock.unlock();
    CHECK(lock.try_lock());
    lock.unlock();
}

TEST_CASE("a timed acquire after a holder died also reports BrokenLock with the lock taken", "[lock][death]") {
    mpp::Lock lock;
    mpp::Process holder([=] {
        lock.lock();
        ::_exit(0);
    });
    holder.start();
    holder.join();
    CHECK_THROWS_AS(lock.try_lock_for(60s), mpp::BrokenLock);
    CHECK(lock.held_by_this_thread());
    lock.unlock();
    CHECK(lock.acquire(1s));
    lock.release();
}

// ---------------------------------------------------------------- RLock

TEST_CASE("an RLock is re-entered by its holder and freed by the last release", "[rlock]") {
    mpp::RLock rlock;
    rlock.acquire();
    rlock.acquire();
    CHECK(rlock.try_lock());
    CHECK(rlock.acquire(0s));
    shared_cell<std::atomic<int>> child_got_it(-1);
    auto probe = [&] {
        mpp::Process prober([&] { child_got_it->store(rlock.try_lock() ? 1 : 0); });
        prober.start();
        prober.join();
        return child_got_it->load();
    };
    rlock.release();
    rlock.release();
    rlock.release();
    CHECK(probe() == 0);  // one level still held
    rlock.release();
    CHECK(probe() == 1);  // free: the child took it (and its exit left it owner-dead)
    CHECK_THROWS_AS(rlock.lock(), mpp::BrokenLock);
    rlock.unlock();
    CHECK_THROWS_AS(rlock.release(), std::logic_error);  // no longer held
    {
        std::scoped_lock guard(rlock, rlock);  // recursion through the standard helpers
        CHECK(rlock.held_by_this_thread());
    }
    CHECK_FALSE(rlock.held_by_this_thread());
}

TEST_CASE("an RLock held by one thread makes other threads wait", "[rlock]") {
    mpp::RLock rlock;
    rlock.lock();
    bool other_got_it = true;
    std::thread other([&] { other_got_it = rlock.try_lock_for(20ms); });
    other.join();
    CHECK_FALSE(other_got_it);
    std::thread stranger([&] { CHECK_THROWS_AS(rlock.unlock(), std::logic_error); });
    stranger.join();
    rlock.unlock();
}

// ---------------------------------------------------------------- Semaphore

TEST_CASE("a Semaphore counts permits and times out when none is free", "[semaphore]") {
    mpp::Semaphore semaphore(2);
    CHECK(semaphore.value() == 2);
    semaphore.acquire();
    CHECK(semaphore.acquire(0s));
    CHECK(semaphore.value() == 0);
    CHECK_FALSE(semaphore.try_acquire());
    CHECK_FALSE(semaphore.acquire(20ms));
    semaphore.release();
    semaphore.release();
    semaphore.release();  // an unbounded Semaphore may exceed its initial value, as in Python
    CHECK(semaphore.value() == 3);
    CHECK(mpp::Semaphore(0).value() == 0);
    CHECK_THROWS_AS(mpp::Semaphore(-1), std::invalid_argument);
}

TEST_CASE("a Semaphore limits how many processes are inside at once", "[semaphore]") {
    mpp::Semaphore slots(2);
    shared_cell<std::atomic<int>> inside(0);
    shared_cell<std::atomic<int>> most_inside(0);
    std::vector<mpp::Process> workers;
    for (int i = 0; i < 5; ++i) {
        workers.emplace_back([=, &inside, &most_inside] {
            for (int round = 0; round < 20; ++round) {
                slots.acquire();
                const int now = inside->fetch_add(1) + 1;
                int seen = most_inside->load();
                while (now > seen && !most_inside->compare_exchange_weak(seen, now)) {
                }
                std::this_thread::sleep_for(200us);
                inside->fetch_sub(1);
                slots.release();
            }
        });
    }
    for (auto& w : workers) w.start();
    for (auto& w : workers) w.join();
    for (auto& w : workers) CHECK(w.exitcode() == 0);
    CHECK(most_inside->load() >= 1);
    CHECK(most_inside->load() <= 2);
    CHECK(slots.value() == 2);
}

TEST_CASE("a release from another process wakes a Semaphore waiter", "[semaphore]") {
    mpp::Semaphore ready(0);
    mpp::Process releaser([=] {
        std::this_thread::sleep_for(30ms);
        ready.release();
    });
    releaser.start();
    CHECK(ready.acquire(60s));
    releaser.join();
    CHECK(ready.value() == 0);
}

TEST_CASE("waiters killed inside Semaphore::acquire and Event::wait leave no trace", "[semaphore][event][death]") {
    mpp::Semaphore semaphore(0);
    mpp::Event event;
    mpp::Process semaphore_waiter([=] { semaphore.acquire(); });
    mpp::Process event_waiter([=] { event.wait(); });
    semaphore_waiter.start();
    event_waiter.start();
    std::this_thread::sleep_for(30ms);  // most likely asleep by now; the test holds either way
    semaphore_waiter.kill();
    event_waiter.kill();
    semaphore_waiter.join();
    event_waiter.join();
    semaphore.release();
    CHECK(semaphore.value() == 1);  // the dead waiter took nothing
    CHECK(semaphore.acquire(60s));
    event.set();
    CHECK(event.wait(0s));
    mpp::Process survivor([=] {
        semaphore.acquire();
        event.clear();
    });
    survivor.start();
    semaphore.release();
    REQUIRE(survivor.join(120s));
    CHECK(survivor.exitcode() == 0);
    CHECK_FALSE(event.is_set());
    CHECK(semaphore.value() == 0);
}

TEST_CASE("releasing a BoundedSemaphore above its initial value throws std::logic_error", "[semaphore]") {
    mpp::BoundedSemaphore bounded(2);
    CHECK_THROWS_AS(bounded.release(), std::logic_error);
    bounded.acquire();
    CHECK_NOTHROW(bounded.release());
    CHECK_THROWS_AS(bounded.release(), std::logic_error);
    CHECK(bounded.value() == 2);
    mpp::Semaphore& as_semaphore = bounded;  // the bound holds through the base class too
    CHECK_THROWS_AS(as_semaphore.release(), std::logic_error);
}

// ---------------------------------------------------------------- Event

TEST_CASE("an Event set by the parent releases a waiting child", "[event]") {
    mpp::Event go, child_saw_it;
    mpp::Process child([=] {
        go.wait();
        child_saw_it.set();
    });
    child.start();
    CHECK_FALSE(child_saw_it.wait(20ms));  // the child is still waiting
    go.set();
    CHECK(child_saw_it.wait(60s));
    child.join();
    CHECK(child.exitcode() == 0);
}

TEST_CASE("Event is_set, clear and timed wait behave like Python's", "[event]") {
    mpp::Event event;
    CHECK_FALSE(event.is_set());
    CHECK_FALSE(event.wait(10ms));
    event.set();
    event.set();  // idempotent
    CHECK(event.is_set());
    CHECK(event.wait(0s));
    event.wait();  // returns at once
    event.clear();
    CHECK_FALSE(event.is_set());
    CHECK_FALSE(event.wait(0s));
}

TEST_CASE("an Event waiter woken by a set that is cleared at once still returns true", "[event]") {
    mpp::Event event, waiting;
    shared_cell<std::atomic<int>> result(-1);
    mpp::Process waiter([&, event, waiting] {
        waiting.set();
        result->store(event.wait(60s) ? 1 : 0);
    });
    waiter.start();
    REQUIRE(waiting.wait(60s));
    std::this_thread::sleep_for(20ms);  // most likely asleep by now; correct either way
    event.set();
    event.clear();
    waiter.join();
    CHECK(result->load() == 1);
}

// ---------------------------------------------------------------- Condition

TEST_CASE("a Condition hands items from a producer process to a consumer", "[condition]") {
    mpp::Condition condition;
    shared_cell<int> items(0);
    shared_cell<int> consumed(0);
    mpp::Process consumer([&, condition] {
        for (int taken = 0; taken < 50; ++taken) {
            std::scoped_lock guard(condition);
            condition.wait_for([&] { return *items > 0; });
            --*items;
            ++*consumed;
        }
    });
    consumer.start();
    for (int i = 0; i < 50; ++i) {
        std::scoped_lock guard(condition);
        ++*items;
        condition.notify();
    }
    REQUIRE(consumer.join(120s));
    CHECK(consumer.exitcode() == 0);
    CHECK(*consumed == 50);
    CHECK(*items == 0);
}

TEST_CASE("notify_all wakes every waiting process", "[condition]") {
    mpp::Condition condition;
    shared_cell<int> waiting(0);
    shared_cell<int> go(0);
    shared_cell<std::atomic<int>> woke(0);
    std::vector<mpp::Process> waiters;
    for (int i = 0; i < 3; ++i) {
        waiters.emplace_back([&, condition] {
            std::scoped_lock guard(condition);
            ++*waiting;
            condition.wait_for([&] { return *go == 1; });
            woke->fetch_add(1);
        });
    }
    for (auto& w : waiters) w.start();
    REQUIRE(eventually([&] {
        std::scoped_lock guard(condition);
        return *waiting == 3;
    }));
    {
        std::scoped_lock guard(condition);
        *go = 1;
        condition.notify_all();
    }
    for (auto& w : waiters) REQUIRE(w.join(120s));
    CHECK(woke->load() == 3);
}

TEST_CASE("Condition timed waits return false and keep the lock and misuse throws std::logic_error", "[condition]") {
    mpp::Lock lock;
    mpp::Condition condition(lock);
    CHECK(condition.get_lock() == lock);
    CHECK_THROWS_AS(condition.wait(1ms), std::logic_error);  // lock not held
    CHECK_THROWS_AS(condition.notify(), std::logic_error);
    condition.acquire();
    CHECK_FALSE(condition.wait(10ms));
    CHECK(lock.held_by_this_thread());
    CHECK_FALSE(condition.wait_for([] { return false; }, 10ms));
    CHECK(condition.wait_for([] { return true; }, 0ms));
    condition.notify_all();  // nobody waits: harmless
    condition.release();
    CHECK_FALSE(lock.held_by_this_thread());
}

TEST_CASE("a waiter killed inside Condition::wait leaves no trace", "[condition][death]") {
    mpp::Condition condition;
    mpp::Event waiting;
    mpp::Process doomed([=] {
        std::scoped_lock guard(condition);
        waiting.set();
        condition.wait();
    });
    doomed.start();
    REQUIRE(waiting.wait(60s));
    condition.acquire();  // the doomed child is asleep in wait(), the lock free
    condition.release();
    doomed.kill();
    doomed.join();
    {
        std::scoped_lock guard(condition);
        condition.notify_all();
        CHECK_FALSE(condition.wait(5ms));
    }
    CHECK(doomed.exitcode() == -SIGKILL);
}

// ---------------------------------------------------------------- Barrier

TEST_CASE("a Barrier releases all parties together and gives each a distinct index", "[barrier]") {
    constexpr int parties = 4;
    constexpr int rounds = 5;
    mpp::Barrier barrier(parties);
    CHECK(barrier.parties() == parties);
    shared_cell<std::atomic<int>> index_seen[parties];
    shared_cell<std::atomic<int>> arrivals(0);
    shared_cell<std::atomic<int>> early_leavers(0);
    std::vector<mpp::Process> children;
    for (int i = 0; i < parties - 1; ++i) {
        children.emplace_back([&, barrier] {
            for (int round = 0; round < rounds; ++round) {
                arrivals->fetch_add(1);
                const auto index = barrier.wait();
                // Nobody leaves a round before everyone arrived at it.
                if (arrivals->load() < (round + 1) * parties) early_leavers->fetch_add(1);
                index_seen[index]->fetch_add(1);
            }
        });
    }
    for (auto& c : children) c.start();
    for (int round = 0; round < rounds; ++round) {
        arrivals->fetch_add(1);
        const auto index = barrier.wait(120s);
        if (arrivals->load() < (round + 1) * parties) early_leavers->fetch_add(1);
        index_seen[index]->fetch_add(1);
    }
    for (auto& c : children) REQUIRE(c.join(120s));
    CHECK(early_leavers->load() == 0);
    for (auto& seen : index_seen) CHECK(seen->load() == rounds);  // each index once per round
    CHECK(barrier.n_waiting() == 0);
    CHECK_FALSE(barrier.broken());
}

TEST_CASE("aborting a Barrier breaks it for waiters and later callers until reset", "[barrier]") {
    mpp::Barrier barrier(3);
    shared_cell<std::atomic<int>> broke(0);
    mpp::Process waiter([&, barrier] {
        try {
            barrier.wait();
        } catch (const mpp::BrokenBarrier&) {
            broke->store(1);
        }
    });
    waiter.start();
    REQUIRE(eventually([&] { return barrier.n_waiting() == 1; }));
    barrier.abort();
    waiter.join();
    CHECK(broke->load() == 1);
    CHECK(barrier.broken());
    CHECK_THROWS_AS(barrier.wait(), mpp::BrokenBarrier);
    barrier.reset();
    CHECK_FALSE(barrier.broken());
    CHECK(mpp::Barrier(1).wait() == 0);
    CHECK_THROWS_AS(mpp::Barrier(0), std::invalid_argument);
}

TEST_CASE("a Barrier wait that times out breaks the barrier, as in Python", "[barrier]") {
    mpp::Barrier barrier(2);
    CHECK_THROWS_AS(barrier.wait(20ms), mpp::BrokenBarrier);
    CHECK(barrier.broken());
    CHECK(barrier.n_waiting() == 0);
    barrier.reset();
    CHECK_FALSE(barrier.broken());
}

TEST_CASE("resetting a Barrier while a party waits gives that party BrokenBarrier", "[barrier]") {
    mpp::Barrier barrier(2);
    shared_cell<std::atomic<int>> broke(0);
    mpp::Process waiter([&, barrier] {
        try {
            barrier.wait();
        } catch (const mpp::BrokenBarrier&) {
            broke->store(1);
        }
    });
    waiter.start();
    REQUIRE(eventually([&] { return barrier.n_waiting() == 1; }));
    barrier.reset();
    waiter.join();
    CHECK(broke->load() == 1);
    CHECK_FALSE(barrier.broken());  // reset leaves it usable
}

TEST_CASE("a party that dies while waiting at a Barrier breaks it for the others", "[barrier][death]") {
    mpp::Barrier barrier(3);
    mpp::Process doomed([=] { barrier.wait(); });
    doomed.start();
    REQUIRE(eventually([&] { return barrier.n_waiting() == 1; }));
    doomed.kill();  // a zombie until joined below: still counts as dead
    CHECK_THROWS_AS(barrier.wait(120s), mpp::BrokenBarrier);
    CHECK(barrier.broken());
    doomed.join();
    CHECK(doomed.exitcode() == -SIGKILL);
}

// ---------------------------------------------------------------- handles and memory

TEST_CASE("primitive handles survive the serializer and name the same shared object", "[handles]") {
    mpp::Lock lock;
    mpp::RLock rlock;
    mpp::Semaphore semaphore(3);
    mpp::BoundedSemaphore bounded(1);
    mpp::Event event;
    mpp::Condition condition(lock);
    mpp::Barrier barrier(2);
    CHECK(mpp::loads<mpp::Lock>(mpp::dumps(lock)) == lock);
    CHECK(mpp::loads<mpp::RLock>(mpp::dumps(rlock)) == rlock);
    CHECK(mpp::loads<mpp::Semaphore>(mpp::dumps(semaphore)) == semaphore);
    CHECK(mpp::loads<mpp::BoundedSemaphore>(mpp::dumps(bounded)) == bounded);
    CHECK(mpp::loads<mpp::Event>(mpp::dumps(event)) == event);
    CHECK(mpp::loads<mpp::Barrier>(mpp::dumps(barrier)) == barrier);
    const auto decoded = mpp::loads<mpp::Condition>(mpp::dumps(condition));
    CHECK(decoded.get_lock() == lock);
    const auto decoded_event = mpp::loads<mpp::Event>(mpp::dumps(event));
    decoded_event.set();
    CHECK(event.is_set());
    CHECK(mpp::loads<mpp::Semaphore>(mpp::dumps(semaphore)).value() == 3);
    const auto in_a_vector = mpp::loads<std::vector<mpp::Lock>>(mpp::dumps(std::vector<mpp::Lock>{lock, lock}));
    CHECK(in_a_vector.size() == 2);
    CHECK(in_a_vector[1] == lock);
    std::vector<std::byte> garbage(8, std::byte{0xff});
    CHECK_THROWS_AS(mpp::loads<mpp::Lock>(garbage), mpp::SerializationError);
}

TEST_CASE("primitives sent as bytes reach a process forked before they existed", "[handles]") {
    // What a pool does: its workers are forked first, the primitives made later arrive in messages.
    int to_child[2];
    REQUIRE(::pipe(to_child) == 0);
    mpp::Process worker([read_end = to_child[0], write_end = to_child[1]] {
        ::close(write_end);
        std::vector<std::byte> message(4096);
        std::size_t got = 0;
        for (ssize_t n; (n = ::read(read_end, message.data() + got, message.size() - got)) > 0;) got += static_cast<std::size_t>(n);
        message.resize(got);
        auto [lock, event, barrier] = mpp::loads<std::tuple<mpp::Lock, mpp::Event, mpp::Barrier>>(message);
        barrier.wait();
        std::scoped_lock guard(lock);
        event.set();
    });
    worker.start();
    ::close(to_child[0]);
    mpp::Lock lock;
    mpp::Event event;
    mpp::Barrier barrier(2);
    const auto message = mpp::dumps(std::tuple{lock, event, barrier});
    REQUIRE(::write(to_child[1], message.data(), message.size()) == static_cast<ssize_t>(message.size()));
    ::close(to_child[1]);
    CHECK(barrier.wait(120s) <= 1);  // both sides meet on the same barrier
    CHECK(event.wait(120s));
    CHECK(lock.try_lock_for(120s));
    lock.unlock();
    REQUIRE(worker.join(120s));
    CHECK(worker.exitcode() == 0);
}

TEST_CASE("creating and destroying many primitives returns their memory to the segment", "[handles]") {
    auto& segment = mpp::detail::shared_segment::instance();
    { mpp::Barrier warm_up(2); }  // any one-time allocation happens before the measurement
    const std::size_t before = segment.free_bytes();
    for (int i = 0; i < 20000; ++i) {
        mpp::Lock lock;
        mpp::RLock rlock;
        mpp::Semaphore semaphore(1);
        mpp::BoundedSemaphore bounded(2);
        mpp::Event event;
        mpp::Condition condition(lock);
        mpp::Barrier barrier(static_cast<std::size_t>(i % 7 + 1));
        mpp::Lock copy = lock;
        copy = mpp::Lock();
        (void)mpp::loads<mpp::Condition>(mpp::dumps(condition));  // a message's reference is released too
    }
    CHECK(segment.free_bytes() == before);
}

TEST_CASE("primitives passed to processes leave no child unreaped", "[handles]") {
    mpp::Lock lock;
    mpp::Event event;
    {
        mpp::Process a([=] { std::scoped_lock guard(lock); });
        mpp::Process b([=] { event.wait(); });
        a.start();
        b.start();
        event.set();
    }
    CHECK(no_child_left_to_reap());
}
