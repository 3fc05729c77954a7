// detail::reusable_queue, behind a worker's sent chunks, the jobs ready to send and
// an imap's unordered results: first in, first out across wrap-around and growth,
// and no allocation at all once it has been as deep as it gets.
#include <catch2/catch.hpp>

#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "mpp/detail/reusable_queue.hpp"

namespace {

std::size_t allocations = 0;

/// std::allocator that counts what it hands out.
template <class T>
struct counting_allocator {
    using value_type = T;
    counting_allocator() = default;
    template <class U>
    counting_allocator(const counting_allocator<U>&) noexcept {}
    T* allocate(std::size_t n) {
        ++allocations;
        return std::allocator<T>().allocate(n);
    }
    void deallocate(T* p, std::size_t n) noexcept { std::allocator<T>().deallocate(p, n); }
    friend bool operator==(const counting_allocator&, const counting_allocator&) noexcept { return true; }
};

using mpp::detail::reusable_queue;

std::vector<int> drain(reusable_queue<int>& queue) {
    std::vector<int> out;
    while (!queue.empty()) {
        out.push_back(queue.front());
        queue.pop_front();
    }
    return out;
}

TEST_CASE("reusable_queue keeps first in first out across wrap-around and growth", "[reusable_queue]") {
    reusable_queue<int> queue;
    CHECK(queue.empty());
    for (int i = 0; i < 6; ++i) queue.push_back(i);
    queue.pop_front();
    queue.pop_front();                                // the ring's start is now inside its storage
    for (int i = 6; i < 40; ++i) queue.push_back(i);  // wraps, then grows twice while wrapped
    REQUIRE(queue.size() == 38);
    CHECK(queue[0] == 2);
    CHECK(queue[37] == 39);
    std::vector<int> expected;
    for (int i = 2; i < 40; ++i) expected.push_back(i);
    CHECK(drain(queue) == expected);
}

TEST_CASE("reusable_queue puts push_front first", "[reusable_queue]") {
    reusable_queue<int> queue;
    queue.push_back(1);
    queue.push_back(2);
    queue.push_front(0);
    CHECK(drain(queue) == std::vector<int>{0, 1, 2});
    queue.push_front(7);  // into an empty queue
    CHECK(drain(queue) == std::vector<int>{7});
}

TEST_CASE("reusable_queue holds move-only values and works again after being moved from", "[reusable_queue]") {
    reusable_queue<std::unique_ptr<std::string>> queue;
    queue.push_back(std::make_unique<std::string>("a"));
    queue.push_back(std::make_unique<std::string>("b"));
    reusable_queue<std::unique_ptr<std::string>> taken = std::move(queue);
    REQUIRE(taken.size() == 2);
    CHECK(*taken.front() == "a");
    for (auto& value : taken) CHECK(value != nullptr);

    queue.clear();  // a moved-from queue is empty and usable
    queue.push_back(std::make_unique<std::string>("c"));
    REQUIRE(queue.size() == 1);
    CHECK(*queue.front() == "c");
}

TEST_CASE("reusable_queue allocates nothing at a depth it has reached before", "[reusable_queue]") {
    reusable_queue<int, counting_allocator<int>> queue;
    for (int i = 0; i < 100; ++i) queue.push_back(i);
    while (!queue.empty()) queue.pop_front();

    const std::size_t before = allocations;
    CHECK(before > 0);  // the warm-up grew it
    long sum = 0;
    for (int round = 0; round < 10'000; ++round) {  // a stream through a queue 1 to 100 deep
        for (int i = 0; i < round % 100 + 1; ++i) queue.push_back(i);
        if (round % 3 == 0) queue.push_front(-1);
        while (queue.size() > 1) {
            sum += queue.front();
            queue.pop_front();
        }
        queue.pop_front();
    }
    const std::size_t during = allocations - before;
    CHECK(during == 0);
    CHECK(sum > 0);
}

}  // namespace
