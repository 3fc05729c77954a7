// Pipe and Connection: Python's example, ping-pong, poll, one-way pipes, closing, EOF when
// the peer closes or dies, big messages, senders killed mid-send, handles in messages.
#include <catch2/catch.hpp>

#include <mpp/pipe.hpp>
#include <mpp/pool.hpp>
#include <mpp/process.hpp>
#include <mpp/queue.hpp>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "torn_message.hpp"

using namespace std::chrono_literals;

TEST_CASE("a child sends a list through a Pipe and the parent receives it, as in Python's example", "[pipe]") {
    // def f(conn): conn.send([42, None, 'hello']); conn.close()
    // parent_conn, child_conn = Pipe(); p = Process(target=f, args=(child_conn,)); p.start()
    // print(parent_conn.recv()); p.join()
    using item = std::tuple<int, std::optional<int>, std::string>;
    auto ends = mpp::Pipe<item>();
    auto& parent_conn = ends.first;
    auto& child_conn = ends.second;
    mpp::Process p(
        [](mpp::Connection<item> conn) {
            conn.send({42, std::nullopt, "hello"});
            conn.close();
        },
        child_conn);
    p.start();
    CHECK(parent_conn.recv() == item{42, std::nullopt, "hello"});
    p.join();
    CHECK(p.exitcode() == 0);
    CHECK_THROWS_AS(parent_conn.recv(), mpp::EOFError);  // the child closed its end
}

TEST_CASE("two processes play ping-pong through a duplex pipe", "[pipe]") {
    auto ends = mpp::Pipe<int>();
    auto& here = ends.first;
    auto& there = ends.second;
    mpp::Process player([there] {
        for (;;) {
            const int ball = there.recv();
            if (ball < 0) return;
            there.send(ball + 1);
        }
    });
    player.start();
    int ball = 0;
    for (int i = 0; i < 2000; ++i) {
        here.send(ball);
        ball = here.recv();
    }
    here.send(-1);
    player.join();
    CHECK(ball == 2000);
    CHECK(player.exitcode() == 0);
}

TEST_CASE("messages through a pipe arrive in order, whatever their size", "[pipe]") {
    auto ends = mpp::Pipe<std::string>();
    auto& a = ends.first;
    auto& b = ends.second;
    for (std::size_t size = 0; size < 300; size += 7) a.send(std::string(size, 'p'));
    for (std::size_t size = 0; size < 300; size += 7) REQUIRE(b.recv() == std::string(size, 'p'));
    b.send("and back");
    CHECK(a.recv() == "and back");
}

TEST_CASE("poll says whether a message is waiting and poll with a timeout waits for one", "[pipe]") {
    auto ends = mpp::Pipe<int>();
    auto& a = ends.first;
    auto& b = ends.second;
    CHECK_FALSE(b.poll());
    CHECK_FALSE(b.poll(20ms));
    a.send(1);
    CHECK(b.poll());
    CHECK(b.poll(0s));
    CHECK(b.recv() == 1);
    CHECK_FALSE(b.poll());

    mpp::Process late_sender([a] {
        std::this_thread::sleep_for(50ms);
        a.send(2);
    });
    late_sender.start();
    CHECK(b.poll(60s));
    CHECK(b.recv() == 2);
    late_sender.join();
}

TEST_CASE("recv after the other end closed returns what was sent, then throws EOFError", "[pipe]") {
    auto ends = mpp::Pipe<int>();
    auto& a = ends.first;
    auto& b = ends.second;
    a.send(1);
    a.send(2);
    a.close();
    CHECK(b.poll());
    CHECK(b.recv() == 1);
    CHECK(b.recv() == 2);
    CHECK(b.poll());  // like Python: recv would not block, it would raise EOFError
    CHECK_THROWS_AS(b.recv(), mpp::EOFError);
    CHECK_THROWS_AS(b.recv(), mpp::EOFError);
    CHECK_THROWS_AS(b.send(3), mpp::EOFError);  // Python: BrokenPipeError
}

TEST_CASE("using a closed connection throws std::logic_error and close is idempotent", "[pipe]") {
    auto ends = mpp::Pipe<int>();
    auto& a = ends.first;
    a.close();
    a.close();
    CHECK(a.closed());
    CHECK_THROWS_AS(a.send(1), std::logic_error);
    CHECK_THROWS_AS(a.recv(), std::logic_error);
    CHECK_THROWS_AS(a.poll(), std::logic_error);
    mpp::Connection<int> never_opened;
    CHECK_THROWS_AS(never_opened.send(1), std::logic_error);
}

TEST_CASE("a blocked recv wakes with EOFError when the other end is closed", "[pipe]") {
    auto ends = mpp::Pipe<int>();
    auto& a = ends.first;
    auto& b = ends.second;
    mpp::Process closer([a] {
        std::this_thread::sleep_for(50ms);
        a.close();
        std::this_thread::sleep_for(2s);  // still alive: the close alone must end the recv
    });
    closer.start();
    CHECK_THROWS_AS(b.recv(), mpp::EOFError);
    closer.join();
}

TEST_CASE("recv throws EOFError once a peer that sent something has SIGKILLed itself", "[pipe][death]") {
    auto ends = mpp::Pipe<int>();
    auto& parent_conn = ends.first;
    auto& child_conn = ends.second;
    mpp::Process child([child_conn] {
        child_conn.send(7);
        ::raise(SIGKILL);
    });
    child.start();
    CHECK(parent_conn.recv() == 7);
    CHECK_THROWS_AS(parent_conn.recv(), mpp::EOFError);  // without joining first: the child may be a zombie
    child.join();
    CHECK(child.exitcode() == -SIGKILL);
}

TEST_CASE("recv throws EOFError when the only process that got the other end dies without using it", "[pipe][death]") {
    auto ends = mpp::Pipe<int>();
    auto& parent_conn = ends.first;
    auto& child_conn = ends.second;
    mpp::Process child([child_conn] { ::raise(SIGKILL); });
    child.start();
    CHECK_THROWS_AS(parent_conn.recv(), mpp::EOFError);
    child.join();
}

TEST_CASE("a parent that closes its copy of the child's end still gets what the child sends later", "[pipe]") {
    // Python's idiom: p.start(); child_conn.close(); parent_conn.recv()
    auto ends = mpp::Pipe<std::string>();
    auto& parent_conn = ends.first;
    auto& child_conn = ends.second;
    mpp::Process child([child_conn] {
        std::this_thread::sleep_for(100ms);
        child_conn.send("late but here");
    });
    child.start();
    child_conn.close();
    CHECK(parent_conn.recv() == "late but here");
    CHECK_THROWS_AS(parent_conn.recv(), mpp::EOFError);  // the child exited
    child.join();
}

TEST_CASE("a child reading until EOFError stops once the parent closes its end", "[pipe]") {
    // The child inherits a copy of the parent's end too; that copy must not keep its recv waiting.
    auto ends = mpp::Pipe<int>();
    auto& parent_conn = ends.first;
    auto& child_conn = ends.second;
    mpp::Queue<int> total;
    mpp::Process reader([child_conn, total] {
        int sum = 0;
        try {
            for (;;) sum += child_conn.recv();
        } catch (const mpp::EOFError&) {
            total.put(sum);
        }
    });
    reader.start();
    for (int i = 1; i <= 10; ++i) parent_conn.send(i);
    parent_conn.close();
    CHECK(total.get(60s) == std::optional<int>(55));
    reader.join();
    CHECK(reader.exitcode() == 0);
}

TEST_CASE("a one-way pipe receives on its first end and sends on its second only", "[pipe]") {
    auto ends = mpp::Pipe<int>(false);
    auto& reader = ends.first;
    auto& writer = ends.second;
    CHECK(reader.readable());
    CHECK_FALSE(reader.writable());
    CHECK(writer.writable());
    CHECK_FALSE(writer.readable());
    writer.send(5);
    CHECK(reader.recv() == 5);
    CHECK_THROWS_AS(reader.send(1), std::logic_error);
    CHECK_THROWS_AS(writer.recv(), std::logic_error);
    CHECK_THROWS_AS(writer.poll(), std::logic_error);
}

TEST_CASE("a 64 MiB vector goes through a pipe between processes intact", "[pipe][big]") {
    constexpr std::size_t elements = (std::size_t{64} << 20) / sizeof(std::uint64_t);
    auto ends = mpp::Pipe<std::vector<std::uint64_t>>();
    auto& here = ends.first;
    auto& there = ends.second;
    mpp::Process echo([there] {
        auto message = there.recv();
        message.push_back(1);
        there.send(message);
    });
    echo.start();
    here.send(big_message(3, elements));
    auto back = here.recv();
    REQUIRE(back.size() == elements + 1);
    back.pop_back();
    CHECK(is_intact(back, elements));
    echo.join();
}

TEST_CASE("a sender killed in the middle of large sends delivers only whole messages, then EOF", "[pipe][death]") {
    constexpr std::size_t elements = (std::size_t{8} << 20) / sizeof(std::uint64_t);
    auto ends = mpp::Pipe<std::vector<std::uint64_t>>();
    auto& parent_conn = ends.first;
    auto& child_conn = ends.second;
    mpp::Queue<int> started;
    mpp::Process sender([child_conn, started] {
        started.put(1);
        for (std::uint64_t seed = 1;; ++seed) child_conn.send(big_message(seed, elements));
    });
    sender.start();
    REQUIRE(started.get(60s).has_value());
    const auto first = parent_conn.recv();
    CHECK(is_intact(first, elements));
    std::this_thread::sleep_for(5ms);
    sender.kill();
    int received = 1;
    for (;;) {
        try {
            const auto message = parent_conn.recv();
            CHECK(is_intact(message, elements));
            ++received;
        } catch (const mpp::EOFError&) {
            break;
        }
    }
    sender.join();
    CHECK(sender.exitcode() == -SIGKILL);
    CHECK(received >= 1);

    // The same end, handed to a new process, carries the next messages intact.
    mpp::Process successor([child_conn] { child_conn.send(big_message(99, elements)); });
    successor.start();
    const auto next = parent_conn.recv();
    CHECK(next[0] == 99u * 1'000'003u);
    CHECK(is_intact(next, elements));
    successor.join();
}

TEST_CASE("a receiver killed in the middle of a large recv does not disturb the next messages", "[pipe][death]") {
    constexpr std::size_t elements = (std::size_t{16} << 20) / sizeof(std::uint64_t);
    auto ends = mpp::Pipe<std::vector<std::uint64_t>>();
    auto& parent_conn = ends.first;
    auto& child_conn = ends.second;
    mpp::Process receiver([child_conn] {
        for (;;) (void)child_conn.recv();
    });
    receiver.start();
    parent_conn.send(big_message(1, elements));
    parent_conn.send(big_message(2, elements));
    std::this_thread::sleep_for(10ms);
    receiver.kill();
    receiver.join();
    parent_conn.send(big_message(3, elements));
    // Whatever the receiver did not take is still whole, and so is the new message.
    std::uint64_t last_seed = 0;
    while (child_conn.poll()) {
        const auto message = child_conn.recv();
        CHECK(is_intact(message, elements));
        last_seed = message[0] / 1'000'003u;
    }
    CHECK(last_seed == 3);
}

TEST_CASE("a connection travels through a queue and works where it is decoded", "[pipe]") {
    auto ends = mpp::Pipe<int>();
    auto& here = ends.first;
    auto& there = ends.second;
    mpp::Queue<mpp::Connection<int>> mailbox;
    mpp::Process helper([mailbox] {
        const auto conn = mailbox.get(60s).value();
        conn.send(conn.recv() * 2);
    });
    helper.start();
    mailbox.put(there);
    there.close();  // the helper holds it now
    here.send(21);
    CHECK(here.recv() == 42);
    helper.join();
    CHECK_THROWS_AS(here.recv(), mpp::EOFError);
}

TEST_CASE("a pool task answers through a connection it gets as an argument", "[pipe][pool]") {
    mpp::Pool pool(1);
    auto ends = mpp::Pipe<std::string>();
    auto& here = ends.first;
    auto& there = ends.second;
    auto done = pool.apply_async(+[](mpp::Connection<std::string> conn) { conn.send("hello from " + conn.recv()); },
                                 there);
    here.send("the pool");
    CHECK(here.recv() == "hello from the pool");
    done.get();
}

TEST_CASE("creating and destroying many pipes gives their memory back to the segment", "[pipe][leak]") {
    auto& segment = mpp::detail::shared_segment::instance();
    { auto warm_up = mpp::Pipe<int>(); }
    const std::size_t free_before = segment.free_bytes();
    for (int i = 0; i < 20'000; ++i) {
        auto ends = mpp::Pipe<std::string>(i % 2 == 0);
    auto& a = ends.first;
    auto& b = ends.second;
        if (i % 50 == 0) {
            b.send(std::string(500, 'x'));  // left unread on purpose
            a.close();
        }
    }
    CHECK(segment.free_bytes() == free_before);
}
