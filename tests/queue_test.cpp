// Queue, JoinableQueue and SimpleQueue: Python's examples, the blocking and non-blocking
// calls, big messages, many producers and consumers, processes killed mid-put/mid-get,
// handles travelling in messages, and no segment leak.
#include <catch2/catch.hpp>

#include <mpp/pool.hpp>
#include <mpp/process.hpp>
#include <mpp/queue.hpp>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "torn_message.hpp"

using namespace std::chrono_literals;

namespace {

// Hang guard for every blocking wait in these tests: generous, never a timing assertion.
constexpr auto patience = 60s;

}  // namespace

TEST_CASE("a child process puts a list the parent gets, as in Python's Queue example", "[queue]") {
    // def f(q): q.put([42, None, 'hello'])
    // q = Queue(); p = Process(target=f, args=(q,)); p.start(); print(q.get()); p.join()
    using item = std::tuple<int, std::optional<int>, std::string>;
    mpp::Queue<item> q;
    mpp::Process p([](mpp::Queue<item> queue) { queue.put({42, std::nullopt, "hello"}); }, q);
    p.start();
    const auto got = q.get(patience);
    REQUIRE(got.has_value());
    CHECK(*got == item{42, std::nullopt, "hello"});
    p.join();
    CHECK(p.exitcode() == 0);
}

TEST_CASE("a queue hands items out in the order they were put", "[queue]") {
    mpp::Queue<std::string> q;
    for (int i = 0; i < 100; ++i) q.put("item " + std::to_string(i));
    for (int i = 0; i < 100; ++i) CHECK(q.get() == "item " + std::to_string(i));
    CHECK(q.empty());
}

TEST_CASE("put_nowait on a full queue throws Full and get_nowait on an empty one throws Empty", "[queue]") {
    mpp::Queue<int> q(2);
    CHECK_THROWS_AS(q.get_nowait(), mpp::Empty);
    q.put_nowait(1);
    q.put_nowait(2);
    CHECK(q.full());
    CHECK_THROWS_AS(q.put_nowait(3), mpp::Full);
    CHECK(q.get_nowait() == 1);
    q.put_nowait(3);
    CHECK(q.get_nowait() == 2);
    CHECK(q.get_nowait() == 3);
    CHECK_THROWS_AS(q.get_nowait(), mpp::Empty);
}

TEST_CASE("put and get with a timeout give up when nothing changes, and succeed when something does", "[queue]") {
    mpp::Queue<int> q(1);
    CHECK_FALSE(q.get(20ms).has_value());
    CHECK(q.put(7, 20ms));
    CHECK_FALSE(q.put(8, 20ms));  // full
    CHECK(q.qsize() == 1);

    SECTION("a get with a timeout returns an item another process puts while it waits") {
        CHECK(q.get() == 7);
        mpp::Process p([q] {
            std::this_thread::sleep_for(50ms);
            q.put(99);
        });
        p.start();
        CHECK(q.get(patience) == std::optional<int>(99));
        p.join();
    }
    SECTION("a put with a timeout succeeds once another process makes room") {
        mpp::Process p([q] {
            std::this_thread::sleep_for(50ms);
            (void)q.get();
        });
        p.start();
        CHECK(q.put(8, patience));
        p.join();
        CHECK(q.get() == 8);
    }
}

TEST_CASE("qsize, empty and full follow puts and gets, and 0 means the library default bound", "[queue]") {
    mpp::Queue<int> bounded(3);
    CHECK(bounded.maxsize() == 3);
    CHECK(bounded.empty());
    CHECK_FALSE(bounded.full());
    bounded.put(1);
    bounded.put(2);
    CHECK(bounded.qsize() == 2);
    bounded.put(3);
    CHECK(bounded.full());
    (void)bounded.get();
    CHECK(bounded.qsize() == 2);
    CHECK_FALSE(bounded.full());

    CHECK(mpp::Queue<int>().maxsize() == (std::size_t{1} << 20));
    CHECK(mpp::Queue<int>(0).maxsize() == (std::size_t{1} << 20));
}

TEST_CASE("a queue grows its slots on demand up to its bound", "[queue]") {
    mpp::Queue<int> q(10'000);
    for (int i = 0; i < 10'000; ++i) q.put_nowait(i);
    CHECK(q.full());
    CHECK_THROWS_AS(q.put_nowait(-1), mpp::Full);
    for (int i = 0; i < 10'000; ++i) REQUIRE(q.get_nowait() == i);
}

TEST_CASE("a 64 MiB vector travels through a queue between processes intact", "[queue][big]") {
    constexpr std::size_t elements = (std::size_t{64} << 20) / sizeof(std::uint64_t);
    mpp::Queue<std::vector<std::uint64_t>> to_child, to_parent;
    mpp::Process echo(
        [](mpp::Queue<std::vector<std::uint64_t>> in, mpp::Queue<std::vector<std::uint64_t>> out) {
            auto message = in.get();
            message.push_back(1);  // proves the child decoded it
            out.put(message);
        },
        to_child, to_parent);
    echo.start();
    to_child.put(big_message(5, elements));
    auto back = to_parent.get(patience);
    REQUIRE(back.has_value());
    REQUIRE(back->size() == elements + 1);
    back->pop_back();
    CHECK(is_intact(*back, elements));
    echo.join();
    CHECK(echo.exitcode() == 0);
}

TEST_CASE("messages of every size around the inline limit arrive intact", "[queue]") {
    mpp::Queue<std::string> q;
    for (std::size_t size = 0; size < 200; ++size) q.put(std::string(size, static_cast<char>('a' + size % 26)));
    for (std::size_t size = 0; size < 200; ++size)
        REQUIRE(q.get() == std::string(size, static_cast<char>('a' + size % 26)));
}

TEST_CASE("a queue of small slots still carries every message size, inline or in a block", "[queue]") {
    // Queue<int> packs its messages into 16-byte slots; the slot size decides only what
    // travels inline, so a handle that puts other types into the same queue still works.
    STATIC_REQUIRE(mpp::detail::queue_slot_bytes<int>() == 16);
    STATIC_REQUIRE(mpp::detail::queue_slot_bytes<std::string>() == mpp::detail::message_queue::max_slot_bytes);
    mpp::detail::message_queue q(0, 16);
    REQUIRE(q.inline_capacity() == 8);
    auto message = [](std::size_t size) {
        std::vector<std::byte> bytes(size);
        for (std::size_t i = 0; i < size; ++i) bytes[i] = static_cast<std::byte>(size * 7 + i);
        return bytes;
    };
    for (int round = 0; round < 3; ++round) {  // the slot array grows in round 0, then wraps
        for (std::size_t size = 0; size < 100; ++size)
            REQUIRE(q.put(message(size), mpp::detail::steady_deadline::max()) == mpp::detail::wait_outcome::done);
        for (std::size_t size = 0; size < 100; ++size) {
            std::vector<std::byte> got;
            REQUIRE(q.get([&](std::span<const std::byte> bytes) { got.assign(bytes.begin(), bytes.end()); },
                          mpp::detail::no_wait) == mpp::detail::wait_outcome::done);
            REQUIRE(got == message(size));
        }
    }
    CHECK(q.size() == 0);
}

TEST_CASE("a queue keeps its order when its slots grow while they are wrapped around", "[queue]") {
    mpp::Queue<int> q(1'000);
    int next_put = 0, next_get = 0;
    // Uneven puts and gets move the oldest message around the ring before every growth.
    for (int round = 1; round <= 40; ++round) {
        for (int i = 0; i < 3 * round; ++i) q.put_nowait(next_put++);
        for (int i = 0; i < 2 * round; ++i) REQUIRE(q.get_nowait() == next_get++);
    }
    while (next_get < next_put) REQUIRE(q.get_nowait() == next_get++);
    CHECK(q.empty());
}

TEST_CASE("a put or get that went to sleep is woken every time: 3,000 handoffs between processes", "[queue]") {
    // Every item crosses two queues of one slot each, so both sides keep finding the queue
    // empty or full and going to sleep; a single lost wake-up would hang (and time out here).
    mpp::Queue<int> there(1), back(1);
    mpp::Process echo([there, back] {
        for (;;) {
            const auto item = there.get(patience);
            if (!item) ::_exit(2);
            if (*item < 0) return;
            if (!back.put(*item + 1, patience)) ::_exit(3);
        }
    });
    echo.start();
    for (int i = 0; i < 3'000; ++i) {
        REQUIRE(there.put(i, patience));
        REQUIRE(back.get(patience) == std::optional<int>(i + 1));
    }
    there.put(-1);
    echo.join();
    CHECK(echo.exitcode() == 0);
}

TEST_CASE("a producer blocked on a full queue is woken by every get: 20,000 items through one slot", "[queue]") {
    mpp::Queue<int> q(1);
    mpp::Process producer([q] {
        for (int i = 0; i < 20'000; ++i)
            if (!q.put(i, patience)) ::_exit(2);
    });
    producer.start();
    for (int i = 0; i < 20'000; ++i) REQUIRE(q.get(patience) == std::optional<int>(i));
    producer.join();
    CHECK(producer.exitcode() == 0);
}

TEST_CASE("many producers and many consumers deliver exactly the items put, each once", "[queue]") {
    constexpr int producers = 4, consumers = 3, per_producer = 5'000;
    mpp::Queue<int> work(64);  // small, so producers really block on a full queue
    mpp::Queue<std::vector<int>> results;
    std::vector<mpp::Process> processes;
    for (int p = 0; p < producers; ++p) {
        processes.emplace_back(
            [work](int first) {
                for (int i = 0; i < per_producer; ++i) work.put(first + i);
            },
            p * per_producer);
    }
    for (int c = 0; c < consumers; ++c) {
        processes.emplace_back([work, results] {
            std::vector<int> seen;
            for (int item = work.get(); item >= 0; item = work.get()) seen.push_back(item);
            results.put(seen);
        });
    }
    for (auto& process : processes) process.start();
    for (int p = 0; p < producers; ++p) processes[static_cast<std::size_t>(p)].join();
    for (int c = 0; c < consumers; ++c) work.put(-1);  // one stop sign per consumer

    std::vector<int> all;
    for (int c = 0; c < consumers; ++c) {
        const auto seen = results.get(patience);
        REQUIRE(seen.has_value());
        all.insert(all.end(), seen->begin(), seen->end());
    }
    for (auto& process : processes) process.join();
    std::sort(all.begin(), all.end());
    std::vector<int> expected(producers * per_producer);
    std::iota(expected.begin(), expected.end(), 0);
    CHECK(all == expected);
}

TEST_CASE("threads of one process share a queue too", "[queue]") {
    mpp::Queue<int> q(16);
    std::atomic<long> sum{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; ++t)
        threads.emplace_back([&] {
            for (int item = q.get(); item != 0; item = q.get()) sum += item;
        });
    for (int i = 1; i <= 1000; ++i) q.put(i);
    q.put(0);
    q.put(0);
    for (auto& thread : threads) thread.join();
    CHECK(sum == 500'500);
}

TEST_CASE("a process killed in the middle of putting large messages never wedges the queue", "[queue][death]") {
    constexpr std::size_t elements = (std::size_t{8} << 20) / sizeof(std::uint64_t);
    mpp::Queue<std::vector<std::uint64_t>> q(4);
    for (int round = 0; round < 4; ++round) {
        mpp::Process producer([q] {
            for (std::uint64_t seed = 1;; ++seed) q.put(big_message(seed, elements));
        });
        producer.start();
        // Take a message or two so the producer is busy putting, then kill it mid-way.
        for (int i = 0; i <= round % 2; ++i) {
            const auto message = q.get(patience);
            REQUIRE(message.has_value());
            CHECK(is_intact(*message, elements));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(3 * round));
        producer.kill();
        producer.join();
        CHECK(producer.exitcode() == -SIGKILL);
        // Whatever it published is whole; nothing half-written is ever delivered.
        while (auto message = q.get(0s)) CHECK(is_intact(*message, elements));
        // And the queue still works, for small and large messages.
        q.put(big_message(77, elements));
        const auto after = q.get(patience);
        REQUIRE(after.has_value());
        CHECK(is_intact(*after, elements));
        CHECK((*after)[0] == 77u * 1'000'003u);
    }
}

TEST_CASE("a process killed in the middle of getting large messages never wedges the queue", "[queue][death]") {
    constexpr std::size_t elements = (std::size_t{8} << 20) / sizeof(std::uint64_t);
    mpp::Queue<std::vector<std::uint64_t>> q(4);
    mpp::Queue<int> taken;
    for (int round = 0; round < 3; ++round) {
        mpp::Process consumer([q, taken] {
            for (;;) {
                (void)q.get();
                taken.put(1);
            }
        });
        consumer.start();
        q.put(big_message(1, elements));
        REQUIRE(taken.get(patience).has_value());  // the consumer is in its loop
        q.put(big_message(2, elements));
        std::this_thread::sleep_for(std::chrono::milliseconds(2 * round));
        consumer.kill();
        consumer.join();
        while (taken.get(0s)) {
        }
        while (auto message = q.get(0s)) CHECK(is_intact(*message, elements));
        for (std::uint64_t seed = 10; seed < 13; ++seed) q.put(big_message(seed, elements));
        for (std::uint64_t seed = 10; seed < 13; ++seed) {
            const auto message = q.get(patience);
            REQUIRE(message.has_value());
            CHECK((*message)[0] == seed * 1'000'003u);
            CHECK(is_intact(*message, elements));
        }
    }
}

TEST_CASE("processes killed while putting and getting at full speed never leave the queue locked", "[queue][death]") {
    mpp::Queue<int> q(8);
    for (int round = 0; round < 10; ++round) {
        mpp::Process producer([q] {
            for (int i = 0;; ++i) q.put(i);
        });
        mpp::Process consumer([q] {
            for (;;) (void)q.get();
        });
        producer.start();
        consumer.start();
        std::this_thread::sleep_for(std::chrono::milliseconds(1 + round));
        producer.kill();
        consumer.kill();
        producer.join();
        consumer.join();
        // The lock may have died with its holder: the next user takes it over.
        while (q.get(0s)) {
        }
        q.put(round);
        CHECK(q.get(patience) == std::optional<int>(round));
    }
}

TEST_CASE("JoinableQueue.join waits until every item was marked done", "[queue][joinable]") {
    // Python: for item in source: q.put(item); q.join()  # workers call q.task_done()
    constexpr int items = 200;
    mpp::JoinableQueue<int> q;
    mpp::Queue<int> results;
    std::vector<mpp::Process> workers;
    for (int w = 0; w < 2; ++w) {
        workers.emplace_back([q, results] {
            for (;;) {
                const int item = q.get();
                if (item < 0) {
                    q.task_done();
                    return;
                }
                results.put(item * item);  // the result exists before its task is done
                q.task_done();
            }
        });
    }
    for (auto& worker : workers) worker.start();
    for (int i = 0; i < items; ++i) q.put(i);
    q.join();
    CHECK(results.qsize() == static_cast<std::size_t>(items));
    q.put(-1);
    q.put(-1);
    q.join();
    for (auto& worker : workers) worker.join();
    long sum = 0;
    while (auto result = results.get(0s)) sum += *result;
    CHECK(sum == 2'646'700);  // sum of i*i for i < 200
}

TEST_CASE("task_done called more times than items were put throws std::logic_error", "[queue][joinable]") {
    mpp::JoinableQueue<int> q;
    CHECK_THROWS_AS(q.task_done(), std::logic_error);
    q.put(1);
    q.put(2);
    (void)q.get();
    q.task_done();
    (void)q.get();
    q.task_done();
    CHECK_THROWS_AS(q.task_done(), std::logic_error);
    q.join();  // nothing unfinished: returns at once
}

TEST_CASE("a JoinableQueue is a Queue", "[queue][joinable]") {
    mpp::JoinableQueue<int> joinable(2);
    const mpp::Queue<int>& plain = joinable;
    plain.put(4);
    CHECK(joinable.qsize() == 1);
    CHECK(plain.get() == 4);
    joinable.task_done();
    joinable.join();
}

TEST_CASE("SimpleQueue puts and gets across processes", "[queue][simple]") {
    mpp::SimpleQueue<std::string> q;
    CHECK(q.empty());
    mpp::Process p([q] {
        q.put("one");
        q.put("two");
    });
    p.start();
    CHECK(q.get() == "one");
    CHECK(q.get() == "two");
    p.join();
    CHECK(q.empty());
}

TEST_CASE("copies of a handle are the same queue and assignment rebinds a handle", "[queue]") {
    mpp::Queue<int> a, b;
    mpp::Queue<int> copy = a;
    CHECK(copy == a);
    CHECK_FALSE(copy == b);
    copy.put(1);
    CHECK(a.get() == 1);
    copy = b;
    copy.put(2);
    CHECK(a.empty());
    CHECK(b.get() == 2);

    mpp::Queue<int> moved_to = std::move(a);  // moving copies: the moved-from handle still works
    a.put(3);
    CHECK(moved_to.get() == 3);
}

TEST_CASE("close stops this handle from putting or getting but not its other handles", "[queue]") {
    mpp::Queue<int> q;
    mpp::Queue<int> other = q;
    q.put(1);
    q.close();
    q.close();  // idempotent
    CHECK_THROWS_AS(q.put(2), std::logic_error);
    CHECK_THROWS_AS(q.get(), std::logic_error);
    CHECK_THROWS_AS(q.get_nowait(), std::logic_error);
    CHECK(q.qsize() == 1);
    CHECK_NOTHROW(q.join_thread());  // Python's close(); join_thread() idiom: nothing left to flush
    other.put(3);
    CHECK(other.get() == 1);
    CHECK(other.get() == 3);
}

TEST_CASE("a queue handle travels inside a message and works where it is decoded", "[queue]") {
    mpp::Queue<mpp::Queue<int>> mailbox;
    mpp::Queue<int> replies;
    mpp::Process p([mailbox] {
        const mpp::Queue<int> reply_to = mailbox.get();
        reply_to.put(123);
    });
    p.start();
    mailbox.put(replies);
    CHECK(replies.get(patience) == std::optional<int>(123));
    p.join();
}

TEST_CASE("a handle decoded from a message keeps the queue alive after the sender's handles are gone", "[queue]") {
    std::vector<std::byte> bytes;
    {
        mpp::Queue<std::string> q;
        q.put("still here");
        bytes = mpp::dumps(q);
    }
    const auto q = mpp::loads<mpp::Queue<std::string>>(bytes);
    CHECK(q.get() == "still here");
}

TEST_CASE("pool tasks take a queue as an argument, also a pool made before the queue", "[queue][pool]") {
    mpp::Pool pool(2);
    mpp::Queue<int> results;
    mpp::JoinableQueue<int> tasks;
    const auto echoed = pool.map(
        +[](std::pair<mpp::Queue<int>, int> job) {
            job.first.put(job.second * 10);
            return job.second;
        },
        std::vector<std::pair<mpp::Queue<int>, int>>{{results, 1}, {results, 2}, {results, 3}});
    CHECK(echoed == std::vector<int>{1, 2, 3});
    int sum = 0;
    for (int i = 0; i < 3; ++i) sum += results.get(patience).value_or(-1000);
    CHECK(sum == 60);
    tasks.put(5);
    CHECK(pool.apply(+[](mpp::JoinableQueue<int> q) {
              const int item = q.get();
              q.task_done();
              return item;
          },
                     tasks) == 5);
    tasks.join();
}

TEST_CASE("plain structs travel as their bytes", "[queue]") {
    struct point {
        double x, y;
        int tag;
    };
    mpp::Queue<point> q;
    q.put({1.5, -2.5, 7});
    const point p = q.get();
    CHECK(p.x == 1.5);
    CHECK(p.y == -2.5);
    CHECK(p.tag == 7);
}

TEST_CASE("bytes that do not hold a queue handle are refused with SerializationError", "[queue]") {
    const auto not_a_queue = mpp::dumps(std::uint64_t{42});
    CHECK_THROWS_AS(mpp::loads<mpp::Queue<int>>(not_a_queue), mpp::SerializationError);
}

TEST_CASE("creating and destroying 100,000 queues gives all their memory back to the segment", "[queue][leak]") {
    auto& segment = mpp::detail::shared_segment::instance();
    { mpp::Queue<int> warm_up; warm_up.put(1); }
    const std::size_t free_before = segment.free_bytes();
    for (int i = 0; i < 100'000; ++i) {
        mpp::Queue<std::string> q(i % 7 + 2);
        if (i % 100 == 0) {
            q.put("inline");
            q.put(std::string(1000, 'x'));  // a payload block, left in the queue on purpose
        }
        if (i % 1000 == 0) {
            mpp::JoinableQueue<int> joinable;
            for (int j = 0; j < 50; ++j) joinable.put(j);  // grows the slot array a few times
        }
    }
    CHECK(segment.free_bytes() == free_before);
}
