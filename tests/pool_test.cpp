// Tests for mpp/pool.hpp: every Pool method and option, results in and out of
// order, empty and huge inputs, move-only results, 64 MiB messages, exceptions
// crossing the process boundary, close/join/terminate, and that no process is
// left behind. (AsyncResult itself is covered by async_result_test.cpp.)
#include <mpp/pool.hpp>
#include <mpp/shared.hpp>
#include <mpp/sync.hpp>

#include <dirent.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <list>
#include <memory>
#include <new>
#include <numeric>
#include <ranges>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <typeinfo>
#include <utility>
#include <vector>

#include "pinned_cpus.hpp"
#include "sanitizers.hpp"

using namespace std::chrono_literals;

// ---- types that cross the process boundary ------------------------------------

namespace pool_test_types {

/// A user exception registered with mpp::register_exception: comes back as itself.
struct QuotaExceeded : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// A user exception nobody registers: comes back as mpp::RemoteError.
struct NeverRegistered : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// A move-only result with no default constructor, shipped through an mpp::codec.
struct Ticket {
    explicit Ticket(int n) : number(n) {}
    Ticket(Ticket&&) = default;
    Ticket& operator=(Ticket&&) = default;
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;
    int number;
};

/// A callable whose state (including a std::string) travels through its serialize member.
struct Affine {
    int scale = 0;
    int offset = 0;
    std::string tag;
    template <class Ar>
    void serialize(Ar& ar) {
        ar(scale, offset, tag);
    }
    std::string operator()(int x) const { return tag + std::to_string(scale * x + offset); }
};

}  // namespace pool_test_types

template <>
struct mpp::codec<pool_test_types::Ticket> {
    static void save(mpp::writer& out, const pool_test_types::Ticket& ticket) {
        mpp::binary_serializer::save(out, ticket.number);
    }
    static pool_test_types::Ticket load(mpp::reader& in) {
        return pool_test_types::Ticket(mpp::binary_serializer::load<int>(in));
    }
};

namespace {

using pool_test_types::Affine;
using pool_test_types::Ticket;

// ---- task functions (plain functions: their addresses are valid in forked workers) ----

int square(int x) { return x * x; }
long long square_long(long long x) { return x * x; }
int add(int a, int b) { return a + b; }
int add3(int a, int b, int c) { return a + b + c; }
std::string repeat(std::string text, int times) {
    std::string out;
    for (int i = 0; i < times; ++i) out += text;
    return out;
}
int my_pid(int) { return static_cast<int>(::getpid()); }

/// Takes and returns pairs whose object layout has padding (12 bytes encoded, 16 in memory).
std::pair<int, double> scale_pair(int factor, double x) {
    if (factor == 13) throw std::range_error("factor 13");
    return {factor * 2, x * factor};
}
std::pair<int, double> swap_halves(std::pair<double, int> p) { return {p.second, p.first}; }

int fails_at_seven(int x) {
    if (x == 7) throw std::runtime_error("task 7 failed");
    return x * 10;
}

/// Fails at 30 (slowly) and at 70 (at once), so in time 70 usually fails first.
int fails_at_thirty_and_seventy(int x) {
    if (x == 30) {
        std::this_thread::sleep_for(100ms);
        throw std::invalid_argument("thirty");
    }
    if (x == 70) throw std::out_of_range("seventy");
    return x;
}

/// Counts each run in a shared Value, then fails for one input.
int counted_then_fails_at_five(mpp::Value<int> runs, int x) {
    {
        std::scoped_lock hold(runs.get_lock());
        runs = runs + 1;
    }
    if (x == 5) throw std::domain_error("five");
    return x;
}

int sleep_then_return(int milliseconds, int value) {
    std::this_thread::sleep_for(std::chrono::milliseconds(milliseconds));
    return value;
}

int sleep_then_return_slowly(int value) { return sleep_then_return(60'000, value); }

std::unique_ptr<int> boxed(int x) { return std::make_unique<int>(x * 3); }
Ticket ticket_for(int x) { return Ticket(x + 1000); }

// The test-data helpers below walk up to 64 MiB byte by byte, in one thread, through
// their own buffers' bounds: under the sanitizers each byte would be a shadow check
// (a 64 MiB round trip took 21 s under TSan). They are left uninstrumented; every byte
// that crosses the rings and the staging area is still checked.

/// 64 MiB in, 64 MiB out: every byte shifted by one, in reverse order.
__attribute__((no_sanitize("thread", "address"))) std::vector<std::byte> shifted_reverse(const std::string& text) {
    std::vector<std::byte> out(text.size());
    const auto* in = reinterpret_cast<const unsigned char*>(text.data());
    std::byte* reversed = out.data();  // not out[i]: at -O1 that is a call, instrumented
    for (std::size_t i = 0; i < text.size(); ++i) reversed[text.size() - 1 - i] = static_cast<std::byte>(in[i] + 1);
    return out;
}

/// How many bytes of `back` differ from shifted_reverse(text).
__attribute__((no_sanitize("thread", "address"))) std::size_t shifted_reverse_mismatches(
    const std::vector<std::byte>& back, const std::string& text) {
    const auto* in = reinterpret_cast<const unsigned char*>(text.data());
    const std::byte* got = back.data();
    std::size_t mismatches = 0;
    for (std::size_t i = 0; i < back.size(); ++i)
        mismatches += got[i] != static_cast<std::byte>(in[text.size() - 1 - i] + 1);
    return mismatches;
}

__attribute__((no_sanitize("thread", "address"))) std::string big_string(std::size_t bytes) {
    std::string text(bytes, '\0');
    char* out = text.data();
    for (std::size_t i = 0; i < bytes; ++i) out[i] = static_cast<char>((i * 31 + i / 4096) % 251);
    return text;
}

std::size_t string_size(const std::string& text) { return text.size(); }

/// Bytes that depend on their position and on `seed`, so a byte moved, lost or
/// taken from another message shows up in a comparison.
__attribute__((no_sanitize("thread", "address"))) std::string pattern(std::size_t bytes, int seed) {
    std::string text(bytes, '\0');
    char* out = text.data();  // not text[i]: at -O1 that is a call, instrumented
    for (std::size_t i = 0; i < bytes; ++i)
        out[i] = static_cast<char>((i * 131 + i / 4093 + static_cast<std::size_t>(seed) * 7) % 253);
    return text;
}

__attribute__((no_sanitize("thread", "address"))) std::uint64_t checksum(const std::string& text) {
    std::uint64_t sum = 1469598103934665603ull;
    const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
    for (std::size_t i = 0; i < text.size(); ++i) sum = (sum ^ bytes[i]) * 1099511628211ull;
    return sum ^ text.size();
}

std::string pattern_of(std::pair<std::size_t, int> job) { return pattern(job.first, job.second); }

template <class E>
int throws_standard(int) {
    throw E("standard failure of " + std::string(typeid(E).name()));
}
int throws_bad_alloc(int) { throw std::bad_alloc(); }
int throws_quota(int x) { throw pool_test_types::QuotaExceeded("quota of " + std::to_string(x)); }
int throws_unregistered(int) { throw pool_test_types::NeverRegistered("nobody knows me"); }
int throws_int(int) { throw 42; }

struct Point {  // trivially copyable: travels as raw bytes
    int x;
    double y;
};
Point halve_and_double(Point p) { return Point{p.x * 2, p.y / 2}; }

struct alignas(32) WideValue {  // aligned beyond what operator new gives by default (16)
    std::array<long long, 8> words;
};
WideValue widen(int x) {
    WideValue value{};
    value.words[7] = x;
    return value;
}
enum class Color : unsigned char { red, green, blue };
Color color_of(int x) { return static_cast<Color>(x % 3); }
bool is_even(int x) { return x % 2 == 0; }
char letter_of(int x) { return static_cast<char>('a' + x % 26); }

// Set by the initializer in each worker; the parent never runs it.
int initializer_runs = 0;
int initializer_runs_seen(int) { return initializer_runs; }

// ---- helpers --------------------------------------------------------------------

std::vector<int> iota_vector(int n) {
    std::vector<int> values(static_cast<std::size_t>(n));
    std::iota(values.begin(), values.end(), 0);
    return values;
}

std::vector<int> squares_of(const std::vector<int>& xs) {
    std::vector<int> out;
    for (int x : xs) out.push_back(x * x);
    return out;
}

/// True when this process has no child left, running or unreaped.
bool no_children_left() {
    errno = 0;
    const pid_t reaped = ::waitpid(-1, nullptr, WNOHANG);
    const bool nothing_to_reap = (reaped == -1 && errno == ECHILD) || reaped == 0;
    bool every_children_file_empty = true;
    if (DIR* tasks = ::opendir("/proc/self/task")) {
        while (dirent* entry = ::readdir(tasks)) {
            if (entry->d_name[0] == '.') continue;
            std::ifstream children(std::string("/proc/self/task/") + entry->d_name + "/children");
            std::string content;
            std::getline(children, content);
            if (!content.empty()) every_children_file_empty = false;
        }
        ::closedir(tasks);
    }
    return nothing_to_reap && every_children_file_empty;
}

bool pid_is_gone(pid_t pid) { return ::kill(pid, 0) == -1 && errno == ESRCH; }

/// A single-pass, move-only input view (a generator): 0, 1, ..., n-1.
class counting_input {
public:
    explicit counting_input(int n) : next_(std::make_unique<int>(0)), end_(n) {}
    counting_input(counting_input&&) = default;
    counting_input& operator=(counting_input&&) = default;

    class iterator {
    public:
        using value_type = int;
        using difference_type = std::ptrdiff_t;
        iterator() = default;
        explicit iterator(counting_input* input) : input_(input) {}
        iterator(iterator&&) = default;
        iterator& operator=(iterator&&) = default;
        int operator*() const { return *input_->next_; }
        iterator& operator++() {
            ++*input_->next_;
            return *this;
        }
        void operator++(int) { ++*this; }
        friend bool operator==(const iterator& it, std::default_sentinel_t) { return it.input_->done(); }

    private:
        counting_input* input_ = nullptr;
    };

    iterator begin() { return iterator(this); }
    std::default_sentinel_t end() { return {}; }
    bool done() const { return *next_ >= end_; }

private:
    std::unique_ptr<int> next_;
    int end_;
};

/// A Serializer of our own: binary_serializer's bytes behind a marker byte, so a
/// side that decoded with anything else would fail or read garbage.
std::atomic<int> marked_saves{0};
std::atomic<int> marked_loads{0};
struct marked_serializer {
    static constexpr std::byte marker{0xA5};
    template <class T>
    static void save(mpp::writer& out, const T& value) {
        marked_saves.fetch_add(1);
        out.write(&marker, 1);
        mpp::binary_serializer::save(out, value);
    }
    template <class T>
    static T load(mpp::reader& in) {
        marked_loads.fetch_add(1);
        if (in.read(1)[0] != marker) throw mpp::SerializationError("marked_serializer: the marker byte is missing");
        return mpp::binary_serializer::load<T>(in);
    }
};

}  // namespace

template <>
inline constexpr bool std::ranges::enable_view<counting_input> = true;

// ---- compile-time contract ---------------------------------------------------------

static_assert(!mpp::shippable<std::function<int(int)>>, "a std::function cannot travel to a worker");
static_assert(mpp::shippable<int (*)(int)>, "a function pointer can travel to a worker");
static_assert(mpp::shippable<Affine>, "a function object with a serialize member can travel");
static_assert(std::ranges::input_range<counting_input> && std::ranges::view<counting_input> &&
                  !std::copyable<counting_input> && !std::copyable<counting_input::iterator>,
              "counting_input is the move-only, single-pass input the imap tests need");
static_assert(std::is_same_v<decltype(std::declval<mpp::Pool&>().apply_async(square, 1)), mpp::AsyncResult<int>>);
static_assert(std::is_same_v<decltype(std::declval<mpp::Pool&>().map(square, std::vector<int>{})), std::vector<int>>);

// ---- apply, map, starmap ---------------------------------------------------------

TEST_CASE("apply runs a function in a worker process and returns its result", "[pool][apply]") {
    mpp::Pool pool(2);
    CHECK(pool.size() == 2);
    CHECK(pool.apply(add, 2, 3) == 5);
    CHECK(pool.apply(repeat, std::string("ab"), 3) == "ababab");
    const int worker = pool.apply(my_pid, 0);
    CHECK(worker != ::getpid());
    const auto pids = pool.pids();
    CHECK(std::find(pids.begin(), pids.end(), worker) != pids.end());
}

TEST_CASE("apply reads its own result and hands over to the pool thread whenever it must",
          "[pool][apply]") {
    // With the pool thread asleep and a worker idle, apply hands the task to the worker
    // and reads the result itself; these are the cases where it must hand over or share.
    mpp::Pool pool(mpp::PoolOptions{.processes = 2, .ring_bytes = 4096});
    (void)pool.pids();  // both workers up and idle
    SECTION("results larger than the ring stream through it in pieces") {
        for (std::size_t bytes : {0, 1, 4000, 4096, 5000, 100'000, 200'000}) CHECK(pool.apply(big_string, bytes) == big_string(bytes));
    }
    SECTION("a task slower than the caller's watch is finished by the pool thread") {
        for (int i = 0; i < 5; ++i) CHECK(pool.apply(sleep_then_return, 20, i) == i);
    }
    SECTION("a task's exception comes back the same way") {
        CHECK_THROWS_AS(pool.apply(throws_standard<std::out_of_range>, 1), std::out_of_range);
        CHECK(pool.apply(add, 1, 2) == 3);
    }
    SECTION("applies before, during and after a map queued by another thread") {
        std::vector<int> map_result;
        std::thread other([&] { map_result = pool.map(square, iota_vector(20'000), 1); });
        int wrong = 0;
        for (int i = 0; i < 2'000; ++i) wrong += pool.apply(add, i, 1) != i + 1;
        other.join();
        for (int i = 0; i < 2'000; ++i) wrong += pool.apply(add, i, 2) != i + 2;
        CHECK(wrong == 0);
        CHECK(map_result == squares_of(iota_vector(20'000)));
    }
    SECTION("two threads applying at once each get their own results") {
        std::atomic<int> wrong{0};
        auto user = [&](int base) {
            for (int i = 0; i < 2'000; ++i) wrong += pool.apply(add, base, i) != base + i;
        };
        std::thread one(user, 1'000'000);
        std::thread two(user, 2'000'000);
        one.join();
        two.join();
        CHECK(wrong.load() == 0);
    }
    SECTION("terminate from another thread fails an apply in flight with PoolTerminated") {
        std::thread terminator([&] {
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
            pool.terminate();
        });
        CHECK_THROWS_AS(pool.apply(sleep_then_return_slowly, 1), mpp::PoolTerminated);
        terminator.join();
        CHECK_THROWS_AS(pool.apply(add, 1, 2), std::logic_error);
    }
}

TEST_CASE("apply on the same CPU as its workers yields to them and gets every result", "[pool][apply]") {
    // Pinned to one CPU, and so are the pool's thread and processes (they inherit
    // the mask): every worker apply finds shares the caller's CPU, so the caller
    // yields while it waits and the worker sleeps at once after each task.
    const pinned scope(only_cpu(::sched_getcpu()));

    mpp::Pool pool(2);
    int wrong = 0;
    for (int i = 0; i < 500; ++i) wrong += pool.apply(add, i, 1) != i + 1;
    auto queued = pool.apply_async(square, 7);  // through the pool thread, between direct calls
    for (int i = 0; i < 100; ++i) wrong += pool.apply(add, i, 2) != i + 2;
    CHECK(wrong == 0);
    CHECK(queued.get() == 49);
    CHECK(pool.map(square, iota_vector(1'000), 1) == squares_of(iota_vector(1'000)));
    CHECK(pool.apply(big_string, 100'000) == big_string(100'000));
}

TEST_CASE("apply_async returns a result that get() delivers", "[pool][apply]") {
    mpp::Pool pool(2);
    std::vector<mpp::AsyncResult<int>> results;
    for (int i = 0; i < 20; ++i) results.push_back(pool.apply_async(add, i, 100));
    for (int i = 0; i < 20; ++i) CHECK(results[static_cast<std::size_t>(i)].get() == i + 100);
}

TEST_CASE("apply_async reuses the memory of finished calls and serves over-aligned results", "[pool][apply]") {
    mpp::Pool pool(2);
    for (int round = 0; round < 3; ++round) {  // later rounds take their jobs from the pool's cache
        std::vector<mpp::AsyncResult<int>> results;
        for (int i = 0; i < 2000; ++i) results.push_back(pool.apply_async(add, i, round));
        for (int i = 0; i < 2000; ++i) REQUIRE(results[static_cast<std::size_t>(i)].get() == i + round);
    }
    // A job whose result is aligned beyond operator new's default takes the ordinary
    // allocator (the cache's first version refused to compile this); block_cache_test
    // checks the alignment of such an object.
    auto wide = pool.apply_async(widen, 7);
    CHECK(wide.get().words[7] == 7);
    CHECK(pool.apply(widen, 8).words[7] == 8);
}

TEST_CASE("map returns the results in input order", "[pool][map]") {
    mpp::Pool pool(2);
    const auto xs = iota_vector(1000);
    CHECK(pool.map(square, xs) == squares_of(xs));
}

TEST_CASE("map of an empty input returns an empty vector", "[pool][map]") {
    mpp::Pool pool(2);
    CHECK(pool.map(square, std::vector<int>{}).empty());
    CHECK(pool.map(square, std::vector<int>{}, 7).empty());
    CHECK(pool.map_async(square, std::list<int>{}).get().empty());
    CHECK(pool.starmap(add, std::vector<std::pair<int, int>>{}).empty());
    // The pool still works afterwards.
    CHECK(pool.map(square, std::vector<int>{3}) == std::vector<int>{9});
}

TEST_CASE("map honours chunksize 1, 7, 1000 and chooses one for chunksize 0", "[pool][map]") {
    mpp::Pool pool(2);
    const auto xs = iota_vector(2503);
    const auto expected = squares_of(xs);
    for (std::size_t chunksize : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{1000}}) {
        INFO("chunksize " << chunksize);
        CHECK(pool.map(square, xs, chunksize) == expected);
    }
}

TEST_CASE("map streams an input far larger than the rings through them", "[pool][map]") {
    SECTION("the default ring") {
        mpp::Pool pool(2);
        std::vector<long long> xs(300'000);  // about 4.8 MB of framed items: several rings' worth
        std::iota(xs.begin(), xs.end(), 0LL);
        const auto squares = pool.map(square_long, xs);
        REQUIRE(squares.size() == xs.size());
        bool all_right = true;
        for (std::size_t i = 0; i < xs.size(); ++i) all_right = all_right && squares[i] == xs[i] * xs[i];
        CHECK(all_right);
        CHECK(pool.map(square_long, xs, 1) == squares);
    }
    SECTION("a 4 KiB ring, with the results read only at the end") {
        mpp::PoolOptions options;
        options.processes = 2;
        options.ring_bytes = 4096;
        mpp::Pool pool(options);
        const auto xs = iota_vector(40'000);  // squares still fit in an int
        auto pending = pool.map_async(square, xs, 3);
        auto second = pool.map_async(square, xs);
        CHECK(pending.get() == squares_of(xs));
        CHECK(second.get() == squares_of(xs));
    }
}

int pid_after_a_nap(int) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return static_cast<int>(::getpid());
}

TEST_CASE("as many chunks as workers go one to each worker, not two to the first", "[pool][map]") {
    mpp::Pool pool(2);
    (void)pool.pids();  // both workers are up before the chunks are dealt
    const auto pids = pool.map(pid_after_a_nap, iota_vector(2), 1);
    CHECK(pids[0] != pids[1]);
    const auto halves = pool.map(pid_after_a_nap, iota_vector(4), 2);
    CHECK(halves[0] == halves[1]);
    CHECK(halves[2] == halves[3]);
    CHECK(halves[0] != halves[2]);
}

TEST_CASE("a large input of fixed-size items is encoded into shared memory and read there intact",
          "[pool][map][large]") {
    // Above the staging threshold: the items go straight into the task staging
    // area, by one memcpy when their bytes are their encoding, else item by item.
    STATIC_REQUIRE(mpp::detail::stored_as_is<mpp::binary_serializer, std::pair<long long, long long>>::value);
    STATIC_REQUIRE(mpp::detail::stored_as_is<mpp::binary_serializer, std::array<int, 3>>::value);
    STATIC_REQUIRE_FALSE(mpp::detail::stored_as_is<mpp::binary_serializer, std::pair<int, double>>::value);
    STATIC_REQUIRE_FALSE(mpp::detail::stored_as_is<mpp::binary_serializer, std::tuple<int, int>>::value);
    mpp::Pool pool(2);
    std::vector<int> xs = iota_vector(200'000);
    for (int& x : xs) x %= 40'000;  // squares still fit in an int
    const std::list<int> listed(xs.begin(), xs.end());
    std::vector<std::pair<int, double>> padded;
    for (int i = 0; i < 50'000; ++i) padded.emplace_back(i % 7 == 6 ? 5 : i % 7, 0.25 * i);
    for (int round = 0; round < 3; ++round) {  // the staging blocks are freed and reused
        INFO("round " << round);
        CHECK(pool.map(square, xs) == squares_of(xs));
        CHECK(pool.map(square, listed, 999) == squares_of(xs));
        std::vector<std::pair<int, int>> pairs;
        for (int x : xs) pairs.emplace_back(x % 1000, x / 1000);
        const auto sums = pool.starmap(add, pairs);
        bool all_right = sums.size() == pairs.size();
        for (std::size_t i = 0; all_right && i < pairs.size(); ++i) all_right = sums[i] == pairs[i].first + pairs[i].second;
        CHECK(all_right);
        const auto scaled = pool.starmap(scale_pair, padded);
        all_right = scaled.size() == padded.size();
        for (std::size_t i = 0; all_right && i < padded.size(); ++i)
            all_right = scaled[i] == std::pair<int, double>{padded[i].first * 2, padded[i].second * padded[i].first};
        CHECK(all_right);
    }
}

TEST_CASE("map accepts a std::list, a filtered view, an lvalue and an rvalue input", "[pool][map]") {
    mpp::Pool pool(2);
    const std::list<int> linked{5, 1, 4};
    CHECK(pool.map(square, linked) == std::vector<int>{25, 1, 16});
    CHECK(pool.map(square, std::list<int>{2, 3}) == std::vector<int>{4, 9});
    auto evens = std::views::iota(0, 20) | std::views::filter([](int x) { return x % 2 == 0; });
    CHECK(pool.map(square, evens) == std::vector<int>{0, 4, 16, 36, 64, 100, 144, 196, 256, 324});
    std::vector<int> lvalue{7, 8};
    CHECK(pool.map(square, lvalue) == std::vector<int>{49, 64});
    CHECK(lvalue == std::vector<int>{7, 8});  // read, not moved from
}

TEST_CASE("map_async returns at once and delivers the ordered results later", "[pool][map]") {
    mpp::Pool pool(2);
    const auto xs = iota_vector(500);
    auto pending = pool.map_async(square, xs, 10);
    auto other = pool.map_async(square, std::vector<int>{1, 2, 3});
    CHECK(other.get() == std::vector<int>{1, 4, 9});
    CHECK(pending.get() == squares_of(xs));
    CHECK(pending.ready());
    CHECK(pending.successful());
}

TEST_CASE("starmap spreads tuples, pairs and arrays over the function's parameters", "[pool][starmap]") {
    mpp::Pool pool(2);
    const std::vector<std::tuple<int, int, int>> triples{{1, 2, 3}, {10, 20, 30}, {-1, -1, -1}};
    CHECK(pool.starmap(add3, triples) == std::vector<int>{6, 60, -3});

    const std::vector<std::pair<std::string, int>> pairs{{"ab", 2}, {"x", 3}, {"", 5}};
    CHECK(pool.starmap(repeat, pairs) == std::vector<std::string>{"abab", "xxx", ""});

    const std::vector<std::array<int, 2>> arrays{{1, 2}, {3, 4}, {5, 6}};
    CHECK(pool.starmap(add, arrays, 1) == std::vector<int>{3, 7, 11});

    std::vector<std::pair<int, int>> many;
    for (int i = 0; i < 1000; ++i) many.emplace_back(i, 2 * i);
    auto pending = pool.starmap_async(add, many);
    const auto sums = pending.get();
    REQUIRE(sums.size() == 1000);
    for (int i = 0; i < 1000; ++i) CHECK(sums[static_cast<std::size_t>(i)] == 3 * i);
    CHECK(pool.starmap_async(add3, triples, 2).get() == std::vector<int>{6, 60, -3});
}

TEST_CASE("pairs, tuples and arrays of plain values travel unframed and still encode as the Serializer does",
          "[pool][starmap][values]") {
    // Types of a fixed encoded size skip the per-item length framing and the
    // per-result status byte; their bytes must still be the Serializer's bytes.
    using padded = std::tuple<int, double, char>;
    STATIC_REQUIRE(mpp::detail::fixed_encoded_size<mpp::binary_serializer, padded>() == 13);
    STATIC_REQUIRE(mpp::detail::fixed_encoded_size<mpp::binary_serializer, std::array<std::pair<int, char>, 3>>() == 15);
    STATIC_REQUIRE(mpp::detail::fixed_encoded_size<mpp::binary_serializer, std::pair<std::string, int>>() == 0);
    STATIC_REQUIRE(mpp::detail::fixed_encoded_size<mpp::binary_serializer, std::pair<bool, int>>() == 0);
    const padded value{-7, 2.5, 'q'};
    mpp::writer encoded;
    mpp::binary_serializer::save(encoded, value);
    std::array<std::byte, 13> stored{};
    mpp::detail::store_fixed<mpp::binary_serializer>(stored.data(), value);
    CHECK(std::equal(stored.begin(), stored.end(), encoded.bytes().begin(), encoded.bytes().end()));
    CHECK(mpp::detail::load_fixed<mpp::binary_serializer, padded>(stored.data()) == value);

    mpp::Pool pool(2);
    std::vector<std::pair<int, double>> items;
    for (int i = 0; i < 5000; ++i) items.emplace_back(i % 100, 0.5 * i);
    for (std::size_t chunksize : {std::size_t{0}, std::size_t{1}, std::size_t{64}}) {
        INFO("chunksize " << chunksize);
        // Factor 13 throws in the middle of chunks: the dense results before it survive.
        auto outcome = pool.starmap_async(scale_pair, items, chunksize);
        CHECK_THROWS_MATCHES(outcome.get(), std::range_error, Catch::Matchers::Message("factor 13"));
        std::vector<std::pair<int, double>> fine;
        for (const auto& item : items)
            if (item.first != 13) fine.push_back(item);
        const auto scaled = pool.starmap(scale_pair, fine, chunksize);
        REQUIRE(scaled.size() == fine.size());
        for (std::size_t i = 0; i < fine.size(); ++i)
            CHECK(scaled[i] == std::pair<int, double>{fine[i].first * 2, fine[i].second * fine[i].first});
    }

    std::vector<std::pair<double, int>> swapped;
    for (int i = 0; i < 3000; ++i) swapped.emplace_back(1.5 * i, -i);
    std::size_t seen = 0;
    for (auto [first, second] : pool.imap(swap_halves, swapped)) {  // the lazy, batched encoding path
        CHECK(first == -static_cast<int>(seen));
        CHECK(second == 1.5 * static_cast<double>(seen));
        ++seen;
    }
    CHECK(seen == swapped.size());
    CHECK(pool.apply(scale_pair, 3, 1.5) == std::pair<int, double>{6, 4.5});
    CHECK(pool.apply(add3, 1, 2, 3) == 6);
}

// ---- imap and imap_unordered -------------------------------------------------------

TEST_CASE("imap yields in input order and imap_unordered yields the same multiset", "[pool][imap]") {
    mpp::Pool pool(2);
    const auto xs = iota_vector(400);
    for (std::size_t chunksize : {std::size_t{1}, std::size_t{7}}) {
        INFO("chunksize " << chunksize);
        std::vector<int> ordered;
        for (int y : pool.imap(square, xs, chunksize)) ordered.push_back(y);
        CHECK(ordered == squares_of(xs));

        std::multiset<int> unordered;
        for (int y : pool.imap_unordered(square, xs, chunksize)) unordered.insert(y);
        const auto expected = squares_of(xs);
        CHECK(unordered == std::multiset<int>(expected.begin(), expected.end()));
    }
    std::vector<int> from_empty;
    for (int y : pool.imap(square, std::vector<int>{})) from_empty.push_back(y);
    CHECK(from_empty.empty());
}

TEST_CASE("an early break out of imap over an endless input returns and leaves the pool usable", "[pool][imap]") {
    mpp::Pool pool(2);
    long long count = 0;
    bool in_order = true;
    for (long long y : pool.imap(square_long, std::views::iota(0LL))) {
        in_order = in_order && y == count * count;
        if (++count == 2000) break;
    }
    CHECK(count == 2000);
    CHECK(in_order);

    long long unordered_count = 0;
    for (long long y : pool.imap_unordered(square_long, std::views::iota(0LL), 4)) {
        (void)y;
        if (++unordered_count == 500) break;
    }
    CHECK(unordered_count == 500);
    CHECK(pool.apply(add, 1, 2) == 3);
    CHECK(pool.map(square, iota_vector(100)) == squares_of(iota_vector(100)));
}

TEST_CASE("imap throws a failed task's exception at that element and can go on after it", "[pool][imap]") {
    mpp::Pool pool(2);
    SECTION("in order") {
        auto results = pool.imap(fails_at_seven, iota_vector(12));
        std::vector<int> before;
        auto it = results.begin();
        for (; it != results.end(); ++it) {
            try {
                before.push_back(*it);
            } catch (const std::runtime_error& error) {
                CHECK(std::string(error.what()) == "task 7 failed");
                break;
            }
        }
        CHECK(before == std::vector<int>{0, 10, 20, 30, 40, 50, 60});
        REQUIRE(it != results.end());
        std::vector<int> after;
        for (++it; it != results.end(); ++it) after.push_back(*it);
        CHECK(after == std::vector<int>{80, 90, 100, 110});
    }
    SECTION("unordered") {
        std::multiset<int> values;
        int failures = 0;
        auto results = pool.imap_unordered(fails_at_seven, iota_vector(12));
        for (auto it = results.begin(); it != results.end(); ++it) {
            try {
                values.insert(*it);
            } catch (const std::runtime_error& error) {
                CHECK(std::string(error.what()) == "task 7 failed");
                ++failures;
            }
        }
        CHECK(failures == 1);
        CHECK(values == std::multiset<int>{0, 10, 20, 30, 40, 50, 60, 80, 90, 100, 110});
    }
}

TEST_CASE("imap takes a move-only single-pass input view and an lvalue container", "[pool][imap]") {
    mpp::Pool pool(2);
    std::vector<int> from_generator;
    for (int y : pool.imap(square, counting_input(300), 5)) from_generator.push_back(y);
    CHECK(from_generator == squares_of(iota_vector(300)));

    std::multiset<int> unordered;
    for (int y : pool.imap_unordered(square, counting_input(50))) unordered.insert(y);
    const auto expected = squares_of(iota_vector(50));
    CHECK(unordered == std::multiset<int>(expected.begin(), expected.end()));

    const std::list<int> linked{3, 1, 2};
    std::vector<int> from_list;
    for (int y : pool.imap(square, linked)) from_list.push_back(y);
    CHECK(from_list == std::vector<int>{9, 1, 4});
}

// ---- values of every shape ------------------------------------------------------------

TEST_CASE("apply_async of a void function gives an AsyncResult<void> that reports completion", "[pool][apply]") {
    mpp::Pool pool(2);
    mpp::Value<int> cell(0);
    auto done = pool.apply_async([](mpp::Value<int> target, int value) { target.store(value); }, cell, 42);
    static_assert(std::is_same_v<decltype(done), mpp::AsyncResult<void>>);
    done.get();
    CHECK(done.successful());
    CHECK(cell.load() == 42);  // it really ran, in the worker

    auto failing = pool.apply_async([](int) { throw std::length_error("too long"); }, 1);
    static_assert(std::is_same_v<decltype(failing), mpp::AsyncResult<void>>);
    CHECK_THROWS_AS(failing.get(), std::length_error);
}

TEST_CASE("move-only results come back through apply, map and imap", "[pool][values]") {
    mpp::Pool pool(2);
    std::unique_ptr<int> one = pool.apply(boxed, 5);
    REQUIRE(one);
    CHECK(*one == 15);
    auto many = pool.map(boxed, iota_vector(50), 3);
    REQUIRE(many.size() == 50);
    for (int i = 0; i < 50; ++i) {
        REQUIRE(many[static_cast<std::size_t>(i)]);
        CHECK(*many[static_cast<std::size_t>(i)] == 3 * i);
    }

    // No default constructor and no copy: only moves and the codec.
    Ticket ticket = pool.apply(ticket_for, 1);
    CHECK(ticket.number == 1001);
    auto tickets = pool.map(ticket_for, iota_vector(20));
    REQUIRE(tickets.size() == 20);
    for (int i = 0; i < 20; ++i) CHECK(tickets[static_cast<std::size_t>(i)].number == i + 1000);
    std::vector<int> streamed;
    for (Ticket& t : pool.imap(ticket_for, iota_vector(10))) {
        Ticket mine = std::move(t);
        streamed.push_back(mine.number);
    }
    CHECK(streamed == std::vector<int>{1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009});
}

TEST_CASE("a 64 MiB argument and a 64 MiB result make the round trip intact", "[pool][values][large]") {
    mpp::Pool pool(2);
    constexpr std::size_t size = std::size_t{64} << 20;
    std::string text = big_string(size);
    const std::vector<std::byte> back = pool.apply(shifted_reverse, text);
    REQUIRE(back.size() == size);
    CHECK(shifted_reverse_mismatches(back, text) == 0);
    CHECK(pool.apply(string_size, std::move(text)) == size);
}

TEST_CASE("messages around the ring, staging threshold and staging area sizes arrive intact both ways",
          "[pool][values][large]") {
    // The message around a string of n bytes: length word, headers, status and the string's length.
    const std::size_t result_overhead = 8 + sizeof(mpp::detail::result_header) + 1 + 8;
    const std::size_t threshold = mpp::detail::staging_threshold;
    const std::size_t area = std::size_t{8} << 20;  // each worker's result staging area (default 128 MiB)
    for (std::size_t ring : {std::size_t{0}, std::size_t{4096}}) {
        mpp::PoolOptions options;
        options.processes = 2;
        options.ring_bytes = ring;
        options.result_staging_bytes = area;
        mpp::Pool pool(options);
        const std::size_t ring_capacity = ring == 0 ? mpp::detail::default_ring_bytes : ring;
        std::vector<std::size_t> sizes{0,
                                       1,
                                       ring_capacity - 64,
                                       ring_capacity,
                                       ring_capacity + 1,
                                       threshold - result_overhead - 1,
                                       threshold - result_overhead,
                                       threshold - 16,
                                       threshold,
                                       threshold + 1,
                                       std::size_t{5} << 20};
        if (ring == 0) {
            // The largest result that fits the worker's staging area, and one byte more (through the ring).
            sizes.push_back(area - result_overhead);
            sizes.push_back(area - result_overhead + 1);
        }
        int seed = 0;
        for (std::size_t size : sizes) {
            INFO("ring " << ring_capacity << ", " << size << " bytes");
            ++seed;
            const std::string text = pattern(size, seed);
            CHECK(pool.apply(checksum, text) == checksum(text));
            CHECK(pool.apply(pattern, size, seed) == text);
        }
    }
}

TEST_CASE("an argument larger than the task staging area, and more large arguments than fit in it at once, "
          "arrive intact",
          "[pool][values][large]") {
    constexpr std::size_t area = std::size_t{16} << 20;  // default 256 MiB
    mpp::Pool pool(mpp::PoolOptions{.processes = 2, .task_staging_bytes = area});
    const std::string huge = pattern(area + 1, 3);
    CHECK(pool.apply(checksum, huge) == checksum(huge));
    // Five arguments of 3.75 MiB in flight at once: the area holds four, the fifth takes the rings.
    std::vector<std::string> texts;
    std::vector<mpp::AsyncResult<std::uint64_t>> sums;
    for (int i = 0; i < 5; ++i) texts.push_back(pattern(area / 4 - 1024, 10 + i));
    for (const std::string& text : texts) sums.push_back(pool.apply_async(checksum, text));
    for (std::size_t i = 0; i < texts.size(); ++i) CHECK(sums[i].get() == checksum(texts[i]));
}

TEST_CASE("many large messages in a row, between small ones, arrive intact", "[pool][values][large]") {
    mpp::Pool pool(2);
#ifdef MPP_TEST_SANITIZED
    constexpr int messages = 9;  // every size once: large copies are slow under the sanitizers
#else
    constexpr int messages = 24;
#endif
    for (int i = 0; i < messages; ++i) {
        INFO("message " << i);
        const std::size_t size = (std::size_t{1} << 20) * static_cast<std::size_t>(1 + (i * 5) % 9) + static_cast<std::size_t>(i);
        const std::string text = pattern(size, i);
        CHECK(pool.apply(checksum, text) == checksum(text));
        CHECK(pool.apply(pattern, size, i) == text);
        CHECK(pool.apply(square, i) == i * i);
        CHECK(pool.apply(pattern, std::size_t{100}, i) == pattern(100, i));
    }
}

TEST_CASE("large results from several workers at once arrive intact and in their places", "[pool][values][large]") {
    mpp::Pool pool(4);
#ifdef MPP_TEST_SANITIZED
    constexpr int count = 8;  // two each: large copies are slow under the sanitizers
#else
    constexpr int count = 24;
#endif
    std::vector<std::pair<std::size_t, int>> jobs;
    for (int i = 0; i < count; ++i) jobs.emplace_back((std::size_t{3} << 20) + static_cast<std::size_t>(i) * 4099, i);
    const std::vector<std::string> results = pool.map(pattern_of, jobs, 1);
    REQUIRE(results.size() == jobs.size());
    for (std::size_t i = 0; i < jobs.size(); ++i) CHECK(results[i] == pattern_of(jobs[i]));
    std::size_t seen = 0;
    for (const std::string& result : pool.imap_unordered(pattern_of, jobs)) {
        const auto match = std::find_if(jobs.begin(), jobs.end(), [&](const auto& job) { return job.first == result.size(); });
        REQUIRE(match != jobs.end());
        CHECK(result == pattern_of(*match));
        ++seen;
    }
    CHECK(seen == jobs.size());
}

#if defined(__GLIBC__) && !defined(MPP_TEST_SANITIZED)
/// A 48 MiB result whose first bytes hold the page faults its building took in the worker.
std::string large_result_noting_its_faults(int) {
    const auto minor_faults = [] {
        rusage usage{};
        ::getrusage(RUSAGE_SELF, &usage);
        return usage.ru_minflt;
    };
    const long before = minor_faults();
    std::string block(std::size_t{48} << 20, 'x');
    const long faults = minor_faults() - before;
    std::memcpy(block.data(), &faults, sizeof faults);
    return block;
}

TEST_CASE("a worker's next large result reuses memory already faulted in", "[pool][values][large]") {
    // glibc would give each 48 MiB block a fresh mmap, faulted in 4 KiB at a time
    // (12,288 faults) and unmapped again once the result is sent.
    mpp::Pool pool(1);
    for (int call = 0; call < 3; ++call) {
        const std::string result = pool.apply(large_result_noting_its_faults, call);
        REQUIRE(result.size() == std::size_t{48} << 20);
        long faults = 0;
        std::memcpy(&faults, result.data(), sizeof faults);
        INFO("call " << call << ": " << faults << " page faults");
        if (call > 0) CHECK(faults < 768);
    }
}
#endif

TEST_CASE("a ring of 4 KiB still carries messages of a megabyte each way", "[pool][options]") {
    mpp::PoolOptions options;
    options.processes = 2;
    options.ring_bytes = 4096;
    mpp::Pool pool(options);
    const std::string text = big_string(std::size_t{1} << 20);
    CHECK(pool.apply(repeat, text, 2) == text + text);
    const std::vector<std::pair<std::string, int>> jobs{{text, 1}, {"abc", 4}, {text, 1}};
    const auto results = pool.starmap(repeat, jobs);
    REQUIRE(results.size() == 3);
    CHECK(results[0] == text);
    CHECK(results[1] == "abcabcabcabc");
    CHECK(results[2] == text);
}

TEST_CASE("staging areas of any size carry large messages intact, and impossible sizes are refused",
          "[pool][options]") {
    const std::string text = big_string(std::size_t{3} << 20);
    SECTION("areas smaller than one large message: everything streams through the rings") {
        mpp::Pool pool(mpp::PoolOptions{.processes = 2, .task_staging_bytes = 1, .result_staging_bytes = 1});
        CHECK(pool.apply(repeat, text, 2) == text + text);
        CHECK(pool.apply(checksum, text) == checksum(text));
    }
    SECTION("areas of a few MiB hold some messages and not others") {
        mpp::Pool pool(mpp::PoolOptions{
            .processes = 2, .task_staging_bytes = std::size_t{4} << 20, .result_staging_bytes = std::size_t{4} << 20});
        CHECK(pool.apply(repeat, text, 1) == text);       // staged both ways
        CHECK(pool.apply(repeat, text, 2) == text + text);  // a 6 MiB result takes the ring
        CHECK(pool.apply(string_size, text + text) == text.size() * 2);  // so does a 6 MiB argument
    }
    SECTION("sizes past the address space, or a ring past 1 GiB, throw std::invalid_argument") {
        CHECK_THROWS_AS(mpp::Pool(mpp::PoolOptions{.processes = 2, .task_staging_bytes = SIZE_MAX}), std::invalid_argument);
        CHECK_THROWS_AS(mpp::Pool(mpp::PoolOptions{.processes = 2, .result_staging_bytes = SIZE_MAX / 2}),
                        std::invalid_argument);
        CHECK_THROWS_AS(mpp::Pool(mpp::PoolOptions{.processes = 2, .ring_bytes = SIZE_MAX}), std::invalid_argument);
        CHECK_THROWS_AS(mpp::Pool(mpp::PoolOptions{.processes = 2, .ring_bytes = (std::size_t{1} << 30) + 1}),
                        std::invalid_argument);
        mpp::Pool largest_ring(mpp::PoolOptions{.processes = 1, .ring_bytes = std::size_t{1} << 30});
        CHECK(largest_ring.apply(add, 1, 2) == 3);
    }
}

TEST_CASE("bool, enum, char and plain-struct values travel both ways", "[pool][values]") {
    mpp::Pool pool(2);
    CHECK(pool.map(is_even, std::vector<int>{1, 2, 3, 4}) == std::vector<bool>{false, true, false, true});
    CHECK(pool.map(color_of, std::vector<int>{0, 1, 2, 3}) ==
          std::vector<Color>{Color::red, Color::green, Color::blue, Color::red});
    CHECK(pool.map(letter_of, std::vector<int>{0, 1, 25, 26}, 1) == std::vector<char>{'a', 'b', 'z', 'a'});
    const auto points = pool.map(halve_and_double, std::vector<Point>{{1, 3.0}, {2, 5.0}});
    REQUIRE(points.size() == 2);
    CHECK(points[0].x == 2);
    CHECK(points[0].y == 1.5);
    CHECK(points[1].x == 4);
    CHECK(points[1].y == 2.5);
    std::vector<bool> streamed;
    for (bool even : pool.imap(is_even, std::vector<int>{1, 2})) streamed.push_back(even);
    CHECK(streamed == std::vector<bool>{false, true});
}

TEST_CASE("a task failing in the middle of a chunk costs only its own result", "[pool][errors]") {
    mpp::Pool pool(2);
    const auto xs = iota_vector(12);
    for (std::size_t chunksize : {std::size_t{5}, std::size_t{12}, std::size_t{0}}) {
        INFO("chunksize " << chunksize);
        std::vector<int> values;
        int failures = 0;
        auto results = pool.imap(fails_at_seven, xs, chunksize);
        for (auto it = results.begin(); it != results.end(); ++it) {
            try {
                values.push_back(*it);
            } catch (const std::runtime_error&) {
                ++failures;
            }
        }
        CHECK(failures == 1);
        CHECK(values == std::vector<int>{0, 10, 20, 30, 40, 50, 60, 80, 90, 100, 110});
        CHECK_THROWS_MATCHES(pool.map(fails_at_seven, xs, chunksize), std::runtime_error,
                             Catch::Matchers::Message("task 7 failed"));
    }
}

// ---- exceptions -------------------------------------------------------------------------

TEMPLATE_TEST_CASE("a task's standard exception is rethrown as the same type with the same message",
                   "[pool][errors]", std::runtime_error, std::logic_error, std::invalid_argument,
                   std::out_of_range, std::domain_error, std::length_error, std::range_error,
                   std::overflow_error, std::underflow_error) {
    mpp::Pool pool(1);
    const std::string expected = "standard failure of " + std::string(typeid(TestType).name());
    bool caught = false;
    try {
        pool.apply(throws_standard<TestType>, 1);
    } catch (const std::exception& error) {
        caught = true;
        CHECK(typeid(error) == typeid(TestType));
        CHECK(std::string(error.what()) == expected);
    }
    CHECK(caught);
    CHECK_THROWS_AS(pool.map(throws_standard<TestType>, iota_vector(3)), TestType);
}

TEST_CASE("a task's std::bad_alloc is rethrown as std::bad_alloc", "[pool][errors]") {
    mpp::Pool pool(1);
    bool caught = false;
    try {
        pool.apply(throws_bad_alloc, 1);
    } catch (const std::exception& error) {
        caught = true;
        CHECK(typeid(error) == typeid(std::bad_alloc));
        CHECK(std::string(error.what()) == std::bad_alloc().what());
    }
    CHECK(caught);
}

TEST_CASE("a registered user exception comes back as itself, an unregistered one as RemoteError",
          "[pool][errors]") {
    mpp::Pool pool(2);
    // Registered after the workers were forked: only the parent needs to know.
    mpp::register_exception<pool_test_types::QuotaExceeded>();
    CHECK_THROWS_MATCHES(pool.apply(throws_quota, 9), pool_test_types::QuotaExceeded,
                         Catch::Matchers::Message("quota of 9"));

    bool caught = false;
    try {
        pool.apply(throws_unregistered, 1);
    } catch (const mpp::RemoteError& error) {
        caught = true;
        CHECK(error.type_name() == "pool_test_types::NeverRegistered");
        CHECK(std::string(error.what()) == "nobody knows me");
    }
    CHECK(caught);
    CHECK_THROWS_AS(pool.apply(throws_int, 1), mpp::RemoteError);  // not even a std::exception
}

TEST_CASE("map throws the first failed task's exception in input order, after every task ran", "[pool][errors]") {
    mpp::Pool pool(2);
    CHECK_THROWS_MATCHES(pool.map(fails_at_thirty_and_seventy, iota_vector(100), 1), std::invalid_argument,
                         Catch::Matchers::Message("thirty"));
    CHECK_THROWS_MATCHES(pool.map_async(fails_at_thirty_and_seventy, iota_vector(100)).get(), std::invalid_argument,
                         Catch::Matchers::Message("thirty"));

    mpp::Value<int> runs(0);
    std::vector<std::tuple<mpp::Value<int>, int>> inputs;
    for (int i = 0; i < 40; ++i) inputs.emplace_back(runs, i);
    CHECK_THROWS_AS(pool.starmap(counted_then_fails_at_five, inputs, 2), std::domain_error);
    CHECK(runs.load() == 40);
    // The pool is still fine.
    CHECK(pool.map(square, std::vector<int>{4}) == std::vector<int>{16});
}

// ---- callables --------------------------------------------------------------------------

TEST_CASE("function pointers, captureless lambdas, value-capturing lambdas and serializable function objects "
          "all run in workers",
          "[pool][callables]") {
    mpp::Pool pool(2);
    int (*pointer)(int) = square;
    CHECK(pool.map(pointer, std::vector<int>{1, 2, 3}) == std::vector<int>{1, 4, 9});
    CHECK(pool.apply([](int x) { return x - 1; }, 10) == 9);

    volatile int runtime_offset = 1000;  // not a constant: the captured value must travel
    const int offset = runtime_offset;
    auto shifted = [offset](int x) { return x + offset; };
    static_assert(mpp::shippable<decltype(shifted)>);
    CHECK(pool.map(shifted, std::vector<int>{1, 2, 3}) == std::vector<int>{1001, 1002, 1003});
    CHECK(pool.apply(shifted, 5) == 1005);

    const Affine affine{3, runtime_offset, "v="};
    CHECK(pool.map(affine, std::vector<int>{0, 1, 2}) == std::vector<std::string>{"v=1000", "v=1003", "v=1006"});
    std::vector<std::string> streamed;
    for (const std::string& s : pool.imap(affine, std::vector<int>{5})) streamed.push_back(s);
    CHECK(streamed == std::vector<std::string>{"v=1015"});
    CHECK(pool.apply_async(affine, 4).get() == "v=1012");
}

TEST_CASE("basic_pool takes a custom Serializer and uses it on both sides", "[pool][serializer]") {
    const int saves_before = marked_saves.load();
    const int loads_before = marked_loads.load();
    mpp::basic_pool<marked_serializer> pool(2);
    CHECK(pool.apply(add, 20, 22) == 42);
    CHECK(pool.map(square, iota_vector(100)) == squares_of(iota_vector(100)));
    CHECK(pool.starmap(repeat, std::vector<std::pair<std::string, int>>{{"ab", 2}}) ==
          std::vector<std::string>{"abab"});
    const Affine affine{2, 1, "#"};
    CHECK(pool.apply(affine, 3) == "#7");
    std::vector<int> streamed;
    for (int y : pool.imap(square, std::vector<int>{4, 5})) streamed.push_back(y);
    CHECK(streamed == std::vector<int>{16, 25});
    // The parent encoded arguments and decoded results with it (the worker's use is
    // proven by the right answers: binary_serializer would trip over the marker).
    CHECK(marked_saves.load() > saves_before + 100);
    CHECK(marked_loads.load() > loads_before + 100);
}

// ---- options ------------------------------------------------------------------------------

TEST_CASE("processes sets the number of workers and pids() lists them", "[pool][options]") {
    mpp::PoolOptions options;
    options.processes = 3;
    mpp::Pool pool(options);
    CHECK(pool.size() == 3);
    const auto pids = pool.pids();
    REQUIRE(pids.size() == 3);
    CHECK(std::set<pid_t>(pids.begin(), pids.end()).size() == 3);
    for (pid_t pid : pids) CHECK(::kill(pid, 0) == 0);
    for (int pid : pool.map(my_pid, iota_vector(60), 1)) CHECK(std::find(pids.begin(), pids.end(), pid) != pids.end());

    mpp::Pool by_default;
    CHECK(by_default.size() == mpp::cpu_count());
    CHECK(by_default.pids().size() == mpp::cpu_count());
}

TEST_CASE("the initializer runs once in each worker, before its first task, and never in the parent",
          "[pool][options]") {
    mpp::PoolOptions options;
    options.processes = 2;
    options.initializer = [] { ++initializer_runs; };
    {
        mpp::Pool pool(options);
        for (int runs : pool.map(initializer_runs_seen, iota_vector(200), 1)) CHECK(runs == 1);
    }
    options.maxtasksperchild = 3;  // replacement workers run it too, once each
    {
        mpp::Pool pool(options);
        for (int runs : pool.map(initializer_runs_seen, iota_vector(20))) CHECK(runs == 1);
    }
    CHECK(initializer_runs == 0);
}

TEST_CASE("an initializer that throws fails every task with the initializer's own exception", "[pool][options]") {
    mpp::PoolOptions options;
    options.processes = 2;
    options.initializer = [] { throw std::out_of_range("no configuration found"); };
    mpp::Pool pool(options);
    // Results of both wire layouts: raw numbers and encoded strings.
    CHECK_THROWS_MATCHES(pool.apply(square, 3), std::out_of_range, Catch::Matchers::Message("no configuration found"));
    CHECK_THROWS_MATCHES(pool.map(square, iota_vector(50)), std::out_of_range,
                         Catch::Matchers::Message("no configuration found"));
    CHECK_THROWS_MATCHES(pool.apply(repeat, std::string("a"), 2), std::out_of_range,
                         Catch::Matchers::Message("no configuration found"));
    int failures = 0;
    auto results = pool.imap(square, iota_vector(5));
    for (auto it = results.begin(); it != results.end(); ++it) {
        try {
            (void)*it;
        } catch (const std::out_of_range&) {
            ++failures;
        }
    }
    CHECK(failures == 5);
}

TEST_CASE("maxtasksperchild replaces a worker after that many tasks and pids() stays whole",
          "[pool][options]") {
    mpp::PoolOptions options;
    options.processes = 2;
    options.maxtasksperchild = 2;
    mpp::Pool pool(options);
    SECTION("through map with a chosen chunksize") {
        const auto pids = pool.map(my_pid, iota_vector(10));
        const std::set<int> distinct(pids.begin(), pids.end());
        CHECK(distinct.size() >= 5);
        for (int pid : distinct) CHECK(std::count(pids.begin(), pids.end(), pid) <= 2);
    }
    SECTION("through map with a chunksize above the budget") {
        const auto pids = pool.map(my_pid, iota_vector(10), 7);
        CHECK(std::set<int>(pids.begin(), pids.end()).size() >= 5);
    }
    SECTION("through apply") {
        std::set<int> distinct;
        for (int i = 0; i < 10; ++i) {
            distinct.insert(pool.apply(my_pid, i));
            const auto now = pool.pids();
            CHECK(now.size() == 2);
            CHECK(std::count(now.begin(), now.end(), 0) == 0);
        }
        CHECK(distinct.size() >= 5);
    }
    CHECK(pool.pids().size() == 2);
}

// ---- close, join, terminate, destruction ------------------------------------------------------

TEST_CASE("submitting after close() or terminate() throws std::logic_error", "[pool][lifecycle]") {
    mpp::Pool pool(2);
    SECTION("after close") { pool.close(); }
    SECTION("after terminate") { pool.terminate(); }
    CHECK_THROWS_AS(pool.apply(add, 1, 2), std::logic_error);
    CHECK_THROWS_AS(pool.apply_async(add, 1, 2), std::logic_error);
    CHECK_THROWS_AS(pool.map(square, std::vector<int>{1}), std::logic_error);
    CHECK_THROWS_AS(pool.map_async(square, std::vector<int>{1}), std::logic_error);
    CHECK_THROWS_AS(pool.starmap(add, std::vector<std::pair<int, int>>{{1, 2}}), std::logic_error);
    CHECK_THROWS_AS(pool.starmap_async(add, std::vector<std::pair<int, int>>{{1, 2}}), std::logic_error);
    CHECK_THROWS_AS(pool.imap(square, std::vector<int>{1}), std::logic_error);
    CHECK_THROWS_AS(pool.imap_unordered(square, std::vector<int>{1}), std::logic_error);
    pool.join();
}

TEST_CASE("join() before close() throws std::logic_error and close and join are idempotent", "[pool][lifecycle]") {
    mpp::Pool pool(2);
    auto result = pool.apply_async(sleep_then_return, 50, 7);
    CHECK_THROWS_AS(pool.join(), std::logic_error);
    pool.close();
    pool.close();
    pool.join();
    pool.join();
    CHECK(result.ready());  // close + join finished the queued work
    CHECK(result.get() == 7);
    pool.close();
    pool.terminate();  // after join: nothing left to stop
    pool.join();
}

TEST_CASE("close() then join() finishes every queued task", "[pool][lifecycle]") {
    mpp::Pool pool(2);
    std::vector<mpp::AsyncResult<int>> results;
    for (int i = 0; i < 12; ++i) results.push_back(pool.apply_async(sleep_then_return, 20, i));
    auto mapped = pool.map_async(square, iota_vector(1000), 1);
    pool.close();
    pool.join();
    for (int i = 0; i < 12; ++i) {
        CHECK(results[static_cast<std::size_t>(i)].ready());
        CHECK(results[static_cast<std::size_t>(i)].get() == i);
    }
    CHECK(mapped.get() == squares_of(iota_vector(1000)));
}

TEST_CASE("an imap view made before close() still yields every result, after close() and after join()",
          "[pool][lifecycle][imap]") {
    std::vector<int> xs(3000);  // several windows' worth, so most input is read after close()
    for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = static_cast<int>(i % 1000);
    SECTION("iterated after close()") {
        mpp::Pool pool(2);
        auto results = pool.imap(square, xs);
        pool.close();
        std::size_t n = 0;
        bool in_order = true;
        for (int y : results) {
            in_order = in_order && y == xs[n] * xs[n];
            ++n;
        }
        CHECK(n == xs.size());
        CHECK(in_order);
        pool.join();
    }
    SECTION("iterated after join(), which reads the rest of the input") {
        mpp::Pool pool(2);
        auto results = pool.imap_unordered(square, xs, 3);
        pool.close();
        pool.join();
        std::multiset<int> got;
        for (int y : results) got.insert(y);
        const auto expected = squares_of(xs);
        CHECK(got == std::multiset<int>(expected.begin(), expected.end()));
    }
    SECTION("iterated after the pool object is gone") {
        auto make = [] {
            mpp::Pool pool(2);
            return pool.imap(square, std::vector<int>{1, 2, 3});
        };
        auto results = make();
        std::vector<int> got;
        for (int y : results) got.push_back(y);
        CHECK(got == std::vector<int>{1, 4, 9});
    }
}

TEST_CASE("terminate() fails every unfinished result with PoolTerminated", "[pool][lifecycle]") {
    mpp::Pool pool(2);
    const auto pids = pool.pids();
    std::vector<mpp::AsyncResult<int>> sleepers;
    for (int i = 0; i < 4; ++i) sleepers.push_back(pool.apply_async(sleep_then_return, 60'000, i));
    auto mapped = pool.starmap_async(sleep_then_return, std::vector<std::pair<int, int>>{{60'000, 1}, {60'000, 2}});
    auto streamed = pool.imap(sleep_then_return_slowly, iota_vector(3));
    auto it = streamed.begin();  // sends the first items
    pool.terminate();
    for (auto& sleeper : sleepers) CHECK_THROWS_AS(sleeper.get(), mpp::PoolTerminated);
    CHECK_THROWS_AS(mapped.get(), mpp::PoolTerminated);
    CHECK_THROWS_AS(*it, mpp::PoolTerminated);
    pool.join();
    for (pid_t pid : pids) CHECK(pid_is_gone(pid));
}

TEST_CASE("the destructor waits for submitted work, so results obtained before it are delivered",
          "[pool][lifecycle]") {
    mpp::AsyncResult<int> single;
    mpp::AsyncResult<std::vector<int>> mapped;
    {
        mpp::Pool pool(2);
        single = pool.apply_async(sleep_then_return, 200, 77);
        mapped = pool.map_async(square, iota_vector(300), 1);
    }
    CHECK(single.ready());
    CHECK(single.get() == 77);
    CHECK(mapped.ready());
    CHECK(mapped.get() == squares_of(iota_vector(300)));
}

TEST_CASE("fifty pools in a row leave no child process behind", "[pool][lifecycle]") {
    std::vector<pid_t> workers;
    for (int i = 0; i < 50; ++i) {
        mpp::Pool pool(2);
        CHECK(pool.apply(add, i, 1) == i + 1);
        if (i == 0) CHECK_FALSE(no_children_left());  // the check does see a live pool's processes
        const auto pids = pool.pids();
        workers.insert(workers.end(), pids.begin(), pids.end());
    }
    CHECK(no_children_left());
    std::size_t alive = 0;
    for (pid_t pid : workers) alive += !pid_is_gone(pid);
    CHECK(alive == 0);
}

TEST_CASE("two pools alive at once work independently", "[pool][concurrency]") {
    mpp::Pool first(2);
    mpp::Pool second(2);
    const auto first_pids = first.pids();
    const auto second_pids = second.pids();
    for (pid_t pid : first_pids) CHECK(std::find(second_pids.begin(), second_pids.end(), pid) == second_pids.end());
    auto a = first.map_async(square, iota_vector(2000), 3);
    auto b = second.map_async(square_long, std::vector<long long>{1, 2, 3});
    auto c = second.apply_async(add, 4, 5);
    CHECK(first.apply(add, 1, 1) == 2);
    CHECK(b.get() == std::vector<long long>{1, 4, 9});
    CHECK(c.get() == 9);
    CHECK(a.get() == squares_of(iota_vector(2000)));
    first.close();
    first.join();
    CHECK(second.apply(add, 2, 2) == 4);  // unaffected by the other pool's shutdown
}

TEST_CASE("one pool used from two user threads at once gives each thread its own results",
          "[pool][concurrency]") {
    mpp::Pool pool(2);
    std::atomic<int> wrong{0};
    auto user = [&](int base) {
        for (int i = 0; i < 100; ++i)
            if (pool.apply(add, base, i) != base + i) ++wrong;
        const auto xs = iota_vector(500);
        if (pool.map(square, xs, 3) != squares_of(xs)) ++wrong;
        std::vector<mpp::AsyncResult<int>> pending;
        for (int i = 0; i < 50; ++i) pending.push_back(pool.apply_async(add, base, i));
        for (int i = 0; i < 50; ++i)
            if (pending[static_cast<std::size_t>(i)].get() != base + i) ++wrong;
        int expected = 0;
        for (int y : pool.imap(square, xs)) {
            if (y != expected * expected) ++wrong;
            ++expected;
        }
        if (expected != 500) ++wrong;
    };
    std::thread one(user, 1000);
    std::thread two(user, 2000);
    one.join();
    two.join();
    CHECK(wrong.load() == 0);
}
