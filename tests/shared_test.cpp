// Tests for mpp/shared.hpp: Value<T> and Array<T> shared between processes, their locks,
// bounds checks, a writer dying under the lock, handles through the serializer, memory reuse.
#include <mpp/process.hpp>
#include <mpp/serializer.hpp>
#include <mpp/shared.hpp>

#include <signal.h>
#include <unistd.h>

#include <array>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <new>
#include <numeric>
#include <stdexcept>
#include <thread>
#include <vector>

namespace {
using namespace std::chrono_literals;

struct point {
    double x;
    double y;
    std::int64_t tag;
};
}  // namespace

TEST_CASE("Python's Value/Array example: a child negates the array and sets the value", "[shared]") {
    // num = Value('d', 0.0); arr = Array('i', range(10))
    // def f(n, a): n.value = 3.1415927; for i in range(len(a)): a[i] = -a[i]
    mpp::Value<double> num(0.0);
    std::vector<int> ten(10);
    std::iota(ten.begin(), ten.end(), 0);
    mpp::Array<int> arr(ten);
    mpp::Process p(
        [](mpp::Value<double> n, mpp::Array<int> a) {
            n = 3.1415927;
            for (std::size_t i = 0; i < a.size(); ++i) a[i] = -a[i];
        },
        num, arr);
    p.start();
    p.join();
    CHECK(p.exitcode() == 0);
    CHECK(num.load() == 3.1415927);
    CHECK(static_cast<double>(num) == 3.1415927);
    const std::vector<int> expected{0, -1, -2, -3, -4, -5, -6, -7, -8, -9};
    CHECK(std::vector<int>(arr.begin(), arr.end()) == expected);
}

TEST_CASE("a Value incremented under its lock by 4 processes is exact", "[shared]") {
    mpp::Value<long> counter(0);
    constexpr int per_process = 3000;
    std::vector<mpp::Process> workers;
    for (int i = 0; i < 4; ++i) {
        workers.emplace_back([counter] {  // a by-copy capture is const: the handle still writes
            for (int n = 0; n < per_process; ++n) {
                std::scoped_lock guard(counter.get_lock());  // `with counter.get_lock(): counter.value += 1`
                counter = counter + 1;
            }
        });
    }
    for (auto& w : workers) w.start();
    for (auto& w : workers) w.join();
    for (auto& w : workers) CHECK(w.exitcode() == 0);
    CHECK(counter.load() == 4 * per_process);
}

TEST_CASE("a Value holds any trivially copyable type and its copies share it", "[shared]") {
    mpp::Value<int> zero;
    CHECK(zero.load() == 0);
    mpp::Value<point> where(point{1.5, -2.5, 7});
    CHECK(where.load().y == -2.5);
    mpp::Value<point> same = where;  // a copy is the same shared value
    same = point{3.0, 4.0, 8};
    CHECK(where.load().x == 3.0);
    CHECK(where.load().tag == 8);
    mpp::Value<point> other(point{0, 0, 0});
    same = other;  // copy assignment rebinds the handle
    CHECK(same == other);
    CHECK_FALSE(same == where);
    CHECK(where.load().tag == 8);
    mpp::Value<bool> flag(true);
    CHECK(static_cast<bool>(flag));
    {
        mpp::RLock& lock = flag.get_lock();
        std::scoped_lock guard(lock);
        flag.store(false);  // load/store re-enter the RLock the caller holds
        CHECK_FALSE(flag.load());
    }
}

TEST_CASE("an Array checks indexes where asked and exposes its elements as a span", "[shared]") {
    mpp::Array<double> values(4, 0.5);
    CHECK(values.size() == 4);
    CHECK_FALSE(values.empty());
    for (double v : values) CHECK(v == 0.5);
    values[1] = 2.0;
    values.at(2) = 3.0;
    values.store(3, 4.0);
    CHECK(values.load(1) == 2.0);
    CHECK(values.span().size() == 4);
    CHECK(values.span()[3] == 4.0);
    CHECK(values.data() == values.span().data());
    CHECK_THROWS_AS(values.at(4), std::out_of_range);
    CHECK_THROWS_AS(values.load(99), std::out_of_range);
    CHECK_THROWS_AS(values.store(4, 1.0), std::out_of_range);
    mpp::Array<double> alias(values);  // a copy shares the elements, it does not copy them
    alias[0] = -1.0;
    CHECK(values[0] == -1.0);
    CHECK(alias == values);
    mpp::Array<int> empty(0);
    CHECK(empty.size() == 0);
    CHECK(empty.begin() == empty.end());
    CHECK_THROWS_AS(empty.at(0), std::out_of_range);
    mpp::Array<int> from_range(std::array<int, 3>{7, 8, 9});
    CHECK(from_range.size() == 3);
    CHECK(from_range[2] == 9);
}

TEST_CASE("an impossible Array size throws instead of crashing", "[shared]") {
    CHECK_THROWS_AS(mpp::Array<std::int64_t>(SIZE_MAX / 4), std::length_error);
    CHECK_THROWS_AS(mpp::Array<char>(std::size_t{1} << 40), std::bad_alloc);  // beyond the segment
    mpp::Array<int> still_fine(3, 1);  // and the segment still works afterwards
    CHECK(still_fine[2] == 1);
}

TEST_CASE("an Array filled by several processes is seen whole by the parent", "[shared]") {
    mpp::Array<int> squares(64, -1);
    std::vector<mpp::Process> workers;
    for (std::size_t part = 0; part < 4; ++part) {
        workers.emplace_back([squares, part] {
            for (std::size_t i = part; i < squares.size(); i += 4) squares[i] = static_cast<int>(i * i);
        });
    }
    for (auto& w : workers) w.start();
    for (auto& w : workers) w.join();
    for (std::size_t i = 0; i < squares.size(); ++i) CHECK(squares[i] == static_cast<int>(i * i));
}

TEST_CASE("a writer that dies holding a Value's lock makes the next load report BrokenLock once", "[shared][death]") {
    mpp::Value<long> value(1);
    mpp::Process writer([value] {
        value.get_lock().acquire();
        value.store(2);
        ::raise(SIGKILL);  // dies mid-update, lock held
    });
    writer.start();
    writer.join();
    CHECK(writer.exitcode() == -SIGKILL);
    CHECK_THROWS_AS(value.load(), mpp::BrokenLock);
    CHECK_FALSE(value.get_lock().held_by_this_thread());  // load() let go of the lock it reported
    CHECK(value.load() == 2);                              // once; then the value reads normally
    mpp::Process second([value] {
        value.get_lock().acquire();
        ::_exit(0);
    });
    second.start();
    second.join();
    value.store(5);  // a whole-value store repairs a torn value, so it absorbs the report
    CHECK(value.load() == 5);
}

TEST_CASE("Value and Array handles survive the serializer and name the same memory", "[shared]") {
    mpp::Value<int> value(41);
    mpp::Array<short> array(3, 2);
    auto value_again = mpp::loads<mpp::Value<int>>(mpp::dumps(value));
    auto array_again = mpp::loads<mpp::Array<short>>(mpp::dumps(array));
    CHECK(value_again == value);
    CHECK(array_again == array);
    value_again = 42;
    array_again[1] = 9;
    CHECK(value.load() == 42);
    CHECK(array[1] == 9);
    {
        std::scoped_lock guard(value_again.get_lock());
        CHECK(value.get_lock().held_by_this_thread());  // the same RLock too
    }
}

TEST_CASE("creating and destroying many Values and Arrays returns their memory to the segment", "[shared]") {
    auto& segment = mpp::detail::shared_segment::instance();
    { mpp::Array<int> warm_up(1); }
    const std::size_t before = segment.free_bytes();
    for (int i = 0; i < 20000; ++i) {
        mpp::Value<double> value(i);
        mpp::Array<int> array(static_cast<std::size_t>(i % 100), i);
        mpp::Array<int> alias = array;
        (void)mpp::loads<mpp::Value<double>>(mpp::dumps(value));
        (void)mpp::loads<mpp::Array<int>>(mpp::dumps(alias));
    }
    CHECK(segment.free_bytes() == before);
}
