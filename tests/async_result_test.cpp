// Tests for mpp/async_result.hpp: get (with and without a timeout), wait,
// wait_for, ready, successful, valid, and on_complete callbacks registered
// before and after completion. Tasks that must still be running when a check
// happens wait on an mpp::Event the test sets, so no check depends on timing.
#include <mpp/async_result.hpp>
#include <mpp/pool.hpp>
#include <mpp/shared.hpp>
#include <mpp/sync.hpp>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <exception>
#include <future>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

using namespace std::chrono_literals;

namespace {

int square(int x) { return x * x; }

/// Returns `value` once the test opens the gate (the timeout is only a hang guard).
int after_gate(mpp::Event gate, int value) {
    gate.wait(60s);
    return value;
}

int fail_after_gate(mpp::Event gate, int value) {
    gate.wait(60s);
    throw std::invalid_argument("bad value " + std::to_string(value));
}

void store_after_gate(mpp::Event gate, mpp::Value<int> cell, int value) {
    gate.wait(60s);
    cell.store(value);
}

/// What a callback saw, written on whichever thread runs it.
struct callback_record {
    std::mutex mutex;
    std::vector<int> values;
    std::vector<std::string> errors;
    std::vector<std::thread::id> threads;
};

}  // namespace

static_assert(!std::is_copy_constructible_v<mpp::AsyncResult<int>> && !std::is_copy_assignable_v<mpp::AsyncResult<int>>);
static_assert(std::is_nothrow_move_constructible_v<mpp::AsyncResult<int>> &&
              std::is_nothrow_move_assignable_v<mpp::AsyncResult<int>>);

TEST_CASE("get returns the value once and leaves ready and successful working", "[async_result]") {
    mpp::Pool pool(2);
    auto result = pool.apply_async(square, 12);
    CHECK(result.valid());
    CHECK(result.get() == 144);
    CHECK_FALSE(result.valid());  // consumed, like std::future
    CHECK(result.ready());
    CHECK(result.successful());
    CHECK_THROWS_AS(result.get(), std::logic_error);
}

TEST_CASE("get with a timeout throws TimeoutError and consumes nothing while the task runs", "[async_result]") {
    mpp::Pool pool(2);
    mpp::Event gate;
    auto result = pool.apply_async(after_gate, gate, 7);
    CHECK_THROWS_AS(result.get(20ms), mpp::TimeoutError);
    CHECK_THROWS_AS(result.get(std::chrono::microseconds(1)), mpp::TimeoutError);
    CHECK(result.valid());
    CHECK_FALSE(result.ready());
    gate.set();
    CHECK(result.get(60s) == 7);
    CHECK_FALSE(result.valid());
}

TEST_CASE("wait_for reports timeout while the task runs and ready once it finished", "[async_result]") {
    mpp::Pool pool(2);
    mpp::Event gate;
    auto result = pool.apply_async(after_gate, gate, 3);
    CHECK(result.wait_for(10ms) == std::future_status::timeout);
    CHECK_FALSE(result.ready());
    gate.set();
    result.wait();
    CHECK(result.ready());
    CHECK(result.wait_for(0ms) == std::future_status::ready);
    CHECK(result.wait_for(60s) == std::future_status::ready);
    CHECK(result.get() == 3);
}

TEST_CASE("successful throws std::logic_error until ready, then tells success from failure", "[async_result]") {
    mpp::Pool pool(2);
    mpp::Event gate;
    auto good = pool.apply_async(after_gate, gate, 1);
    auto bad = pool.apply_async(fail_after_gate, gate, 2);
    CHECK_THROWS_AS(good.successful(), std::logic_error);
    CHECK_THROWS_AS(bad.successful(), std::logic_error);
    gate.set();
    good.wait();
    bad.wait();
    CHECK(good.successful());
    CHECK_FALSE(bad.successful());
    CHECK_THROWS_MATCHES(bad.get(), std::invalid_argument, Catch::Matchers::Message("bad value 2"));
    CHECK_THROWS_AS(bad.get(), std::invalid_argument);  // an error is rethrown every time
    CHECK_FALSE(bad.successful());
}

TEST_CASE("valid is false for a default-constructed or moved-from result", "[async_result]") {
    mpp::AsyncResult<int> empty;
    CHECK_FALSE(empty.valid());
    CHECK_THROWS_AS(empty.ready(), std::logic_error);
    CHECK_THROWS_AS(empty.get(), std::logic_error);

    mpp::Pool pool(1);
    auto original = pool.apply_async(square, 5);
    mpp::AsyncResult<int> moved = std::move(original);
    CHECK_FALSE(original.valid());  // NOLINT(bugprone-use-after-move): that is the point
    CHECK(moved.valid());
    CHECK(moved.get() == 25);
}

TEST_CASE("a callback registered before completion runs on the pool's thread before ready() turns true",
          "[async_result][callbacks]") {
    mpp::Pool pool(2);
    mpp::Event gate;
    auto result = pool.apply_async(after_gate, gate, 11);
    callback_record seen;
    std::atomic<bool> ready_inside_callback{true};
    std::atomic<bool> callback_finished{false};
    result.on_complete([&](const int& value) {
        {
            std::lock_guard guard(seen.mutex);
            seen.values.push_back(value);
            seen.threads.push_back(std::this_thread::get_id());
        }
        ready_inside_callback = result.ready();
        std::this_thread::sleep_for(50ms);  // a slow callback: wait() must still wait for it
        callback_finished = true;
    });
    gate.set();
    result.wait();
    CHECK(callback_finished.load());
    CHECK_FALSE(ready_inside_callback.load());
    REQUIRE(seen.values == std::vector<int>{11});
    CHECK(seen.threads[0] != std::this_thread::get_id());
    CHECK(result.get() == 11);  // the callback saw the value without consuming it
}

TEST_CASE("a callback registered after completion runs at once on the caller's thread",
          "[async_result][callbacks]") {
    mpp::Pool pool(2);
    auto result = pool.apply_async(square, 9);
    result.wait();
    callback_record seen;
    result.on_complete([&](const int& value) {
        seen.values.push_back(value);
        seen.threads.push_back(std::this_thread::get_id());
    });
    REQUIRE(seen.values == std::vector<int>{81});  // already ran, before on_complete returned
    CHECK(seen.threads[0] == std::this_thread::get_id());
    CHECK(result.get() == 81);
}

TEST_CASE("an error callback receives the task's exception, registered before or after completion",
          "[async_result][callbacks]") {
    mpp::Pool pool(2);
    mpp::Event gate;
    auto result = pool.apply_async(fail_after_gate, gate, 4);
    callback_record seen;
    auto on_value = [&](const int& value) {
        std::lock_guard guard(seen.mutex);
        seen.values.push_back(value);
    };
    auto on_error = [&](std::exception_ptr error) {
        std::lock_guard guard(seen.mutex);
        try {
            std::rethrow_exception(error);
        } catch (const std::invalid_argument& e) {
            seen.errors.push_back(e.what());
        } catch (...) {
            seen.errors.push_back("the wrong type");
        }
    };
    result.on_complete(on_value, on_error);  // before
    gate.set();
    result.wait();
    result.on_complete(on_value, on_error);  // after
    CHECK(seen.values.empty());
    CHECK(seen.errors == std::vector<std::string>{"bad value 4", "bad value 4"});
    // A failure without an error callback is simply not reported to the value callback.
    result.on_complete(on_value);
    CHECK(seen.values.empty());
}

TEST_CASE("on_complete on a temporary returns the result so it can be kept", "[async_result][callbacks]") {
    mpp::Pool pool(2);
    std::atomic<int> seen{0};
    auto result = pool.apply_async(square, 6).on_complete([&](const int& value) { seen = value; });
    static_assert(std::is_same_v<decltype(result), mpp::AsyncResult<int>>);
    CHECK(result.valid());
    CHECK(result.get() == 36);
    CHECK(seen.load() == 36);  // get() waited for the callback, which runs before ready()
}

TEST_CASE("a callback that throws does not break the pool", "[async_result][callbacks]") {
    mpp::Pool pool(2);
    mpp::Event gate;
    auto result = pool.apply_async(after_gate, gate, 5);
    std::atomic<int> later_callback{0};
    result.on_complete([](const int&) { throw std::runtime_error("a careless callback"); });
    result.on_complete([&](const int& value) { later_callback = value; });  // still runs
    gate.set();
    CHECK(result.get() == 5);
    CHECK(later_callback.load() == 5);

    auto again = pool.apply_async(square, 8).on_complete([](const int&) { throw 1; });
    CHECK(again.get() == 64);
    CHECK(pool.map(square, std::vector<int>{1, 2, 3}) == std::vector<int>{1, 4, 9});
}

TEST_CASE("callbacks registered before completion run in completion order", "[async_result][callbacks]") {
    mpp::Pool pool(1);  // one worker: tasks complete in submission order
    mpp::Event gate;
    std::vector<mpp::AsyncResult<int>> results;
    results.push_back(pool.apply_async(after_gate, gate, 0));
    for (int i = 1; i < 20; ++i) results.push_back(pool.apply_async(square, i));
    std::vector<int> order;  // touched only by the pool's thread until every wait() returned
    for (auto& result : results) result.on_complete([&](const int& value) { order.push_back(value); });
    gate.set();
    for (auto& result : results) result.wait();
    std::vector<int> expected{0};
    for (int i = 1; i < 20; ++i) expected.push_back(i * i);
    CHECK(order == expected);
}

TEST_CASE("an AsyncResult<void> waits, reports success and takes void callbacks", "[async_result][void]") {
    mpp::Pool pool(2);
    mpp::Event gate;
    mpp::Value<int> cell(0);
    auto result = pool.apply_async(store_after_gate, gate, cell, 99);
    static_assert(std::is_same_v<decltype(result), mpp::AsyncResult<void>>);
    std::atomic<int> before{0};
    std::atomic<int> after{0};
    result.on_complete([&] { ++before; });
    CHECK_THROWS_AS(result.get(5ms), mpp::TimeoutError);
    CHECK(result.wait_for(1ms) == std::future_status::timeout);
    gate.set();
    result.get();
    CHECK(cell.load() == 99);
    CHECK(before.load() == 1);
    CHECK(result.ready());
    CHECK(result.successful());
    CHECK_FALSE(result.valid());
    result.on_complete([&] { ++after; });
    // get() consumed the result; whether a late value callback still runs is not
    // part of the contract, but it must never run twice or throw.
    CHECK(after.load() <= 1);
}

TEST_CASE("map_async and starmap_async results take callbacks too", "[async_result][callbacks]") {
    mpp::Pool pool(2);
    std::atomic<std::size_t> mapped_size{0};
    std::atomic<int> starmapped_sum{0};
    auto mapped = pool.map_async(square, std::vector<int>{1, 2, 3, 4})
                      .on_complete([&](const std::vector<int>& values) { mapped_size = values.size(); });
    auto starmapped =
        pool.starmap_async([](int a, int b) { return a * b; }, std::vector<std::pair<int, int>>{{2, 3}, {4, 5}})
            .on_complete([&](const std::vector<int>& values) { starmapped_sum = values[0] + values[1]; });
    CHECK(mapped.get() == std::vector<int>{1, 4, 9, 16});
    CHECK(starmapped.get() == std::vector<int>{6, 20});
    CHECK(mapped_size.load() == 4);
    CHECK(starmapped_sum.load() == 26);

    std::atomic<int> errors{0};
    auto failing = pool.map_async([](int x) { return x == 2 ? throw std::range_error("two") : x; },
                                  std::vector<int>{1, 2, 3});
    failing.on_complete([](const std::vector<int>&) {}, [&](std::exception_ptr) { ++errors; });
    CHECK_THROWS_AS(failing.get(), std::range_error);
    CHECK(errors.load() == 1);
}
