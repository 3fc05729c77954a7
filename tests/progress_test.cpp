// mpp::progress: elements pass through unchanged, and the report drawn matches the mode.
#include <mpp/progress.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <iterator>
#include <list>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace {

// A move-only input range whose end is std::default_sentinel_t and whose iterator is move-only,
// like the views imap/imap_unordered return. It yields 0, 1, ..., n-1 once.
class counting_stream {
public:
    explicit counting_stream(int n) : next_(std::make_unique<int>(0)), last_(n) {}
    counting_stream(counting_stream&&) = default;
    counting_stream& operator=(counting_stream&&) = default;

    class iterator {
    public:
        using iterator_concept = std::input_iterator_tag;
        using value_type = int;
        using difference_type = std::ptrdiff_t;
        iterator() = default;
        explicit iterator(counting_stream* owner) : owner_(owner) {}
        iterator(iterator&&) = default;
        iterator& operator=(iterator&&) = default;
        const int& operator*() const { return *owner_->next_; }
        iterator& operator++() {
            ++*owner_->next_;
            return *this;
        }
        void operator++(int) { ++*this; }
        bool operator==(std::default_sentinel_t) const { return *owner_->next_ >= owner_->last_; }

    private:
        counting_stream* owner_ = nullptr;
    };

    iterator begin() {
        ++begin_calls;
        return iterator(this);
    }
    std::default_sentinel_t end() const { return {}; }
    int consumed() const { return *next_; }
    int begin_calls = 0;

private:
    std::unique_ptr<int> next_;
    int last_;
};
static_assert(std::ranges::input_range<counting_stream>);
static_assert(!std::ranges::sized_range<counting_stream>);
static_assert(!std::copyable<counting_stream>);

std::size_t count_lines(const std::string& text) { return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n')); }

mpp::progress_options to(std::ostringstream& out, std::chrono::milliseconds line_interval = std::chrono::hours(1)) {
    mpp::progress_options options;
    options.out = &out;
    options.line_interval = line_interval;
    return options;
}

}  // namespace

TEST_CASE("progress yields the same elements in the same order", "[progress]") {
    std::vector<int> input{5, 3, 9, 1, 7};
    std::ostringstream out;
    std::vector<int> seen;
    for (int x : mpp::progress(input, to(out))) seen.push_back(x);
    CHECK(seen == input);
    static_assert(std::ranges::input_range<mpp::progress_range<std::vector<int>&>>);
}

TEST_CASE("progress hands out references to the wrapped range's own elements", "[progress]") {
    std::vector<int> input{1, 2, 3};
    std::ostringstream out;
    for (int& x : mpp::progress(input, to(out))) x *= 10;
    CHECK(input == std::vector<int>{10, 20, 30});
}

TEST_CASE("progress on a stream that is not a terminal prints one line per interval and a final count",
          "[progress]") {
    std::vector<int> input(5, 0);
    SECTION("with a zero interval every element prints a line and the last one is not repeated") {
        std::ostringstream out;
        for (int x : mpp::progress(input, to(out, std::chrono::milliseconds(0)))) (void)x;
        std::string text = out.str();
        CHECK(count_lines(text) == 5);
        CHECK(text.find("1/5") != std::string::npos);
        CHECK(text.find("5/5") != std::string::npos);
        CHECK(text.find('\r') == std::string::npos);
    }
    SECTION("with a long interval only the final count is printed") {
        std::ostringstream out;
        for (int x : mpp::progress(input, to(out))) (void)x;
        std::string text = out.str();
        CHECK(count_lines(text) == 1);
        CHECK(text.find("100% 5/5") != std::string::npos);
        CHECK(text.find("it/s") != std::string::npos);
    }
}

TEST_CASE("progress in terminal mode redraws one bar in place and ends the line", "[progress]") {
    std::vector<int> input(4, 0);
    std::ostringstream out;
    auto options = to(out);
    options.terminal = true;
    options.bar_interval = std::chrono::milliseconds(0);
    options.description = "work";
    for (int x : mpp::progress(input, options)) (void)x;
    std::string text = out.str();
    CHECK(std::count(text.begin(), text.end(), '\r') == 6);  // 0/4 at start, 1..4, final
    CHECK(count_lines(text) == 1);
    CHECK(text.back() == '\n');
    CHECK(text.find("work: 100%|##############################| 4/4") != std::string::npos);
    CHECK(text.find("work:   0%|------------------------------| 0/4") != std::string::npos);
}

TEST_CASE("progress of an unsized range shows the explicit total, or just the count without one", "[progress]") {
    std::ostringstream out;
    SECTION("explicit total") {
        counting_stream numbers(7);
        int sum = 0;
        for (int x : mpp::progress(numbers, 7, to(out))) sum += x;
        CHECK(sum == 21);
        CHECK(out.str().find("7/7") != std::string::npos);
    }
    SECTION("no total") {
        counting_stream numbers(7);
        for (int x : mpp::progress(numbers, to(out))) (void)x;
        CHECK(out.str().find("/7") == std::string::npos);
        CHECK(out.str().rfind("7 [00:00", 0) == 0);
        CHECK(out.str().find('%') == std::string::npos);
    }
    SECTION("a sized range that is not a vector gets its total from std::ranges::size") {
        std::list<int> items{1, 2, 3};
        auto wrapped = mpp::progress(items, to(out));
        CHECK(wrapped.total() == std::optional<std::size_t>(3));
    }
}

TEST_CASE("progress moves an rvalue move-only range in and references an lvalue one", "[progress]") {
    std::ostringstream out;
    SECTION("rvalue: the wrapper owns it") {
        auto wrapped = mpp::progress(counting_stream(4), to(out));
        static_assert(!std::copyable<decltype(wrapped)>);
        std::vector<int> seen;
        for (int x : wrapped) seen.push_back(x);
        CHECK(seen == std::vector<int>{0, 1, 2, 3});
        CHECK(wrapped.done() == 4);
    }
    SECTION("lvalue: the caller's range is the one consumed") {
        counting_stream numbers(3);
        for (int x : mpp::progress(numbers, to(out))) (void)x;
        CHECK(numbers.begin_calls == 1);
        CHECK(numbers.consumed() == 3);
    }
}

// Like tqdm, an element counts as done once the loop moves past it: breaking in the body of the
// third element leaves two done.
TEST_CASE("progress reports the partial count when the loop is left early", "[progress]") {
    std::vector<int> input(10, 0);
    std::ostringstream out;
    {
        auto wrapped = mpp::progress(input, to(out));
        int taken = 0;
        for (int x : wrapped) {
            (void)x;
            if (++taken == 3) break;
        }
        CHECK(out.str().empty());  // nothing yet: the interval is long and the loop has not ended
    }
    CHECK(count_lines(out.str()) == 1);
    CHECK(out.str().find("2/10") != std::string::npos);
}

TEST_CASE("progress draws nothing when disabled by option or by MPP_PROGRESS=0", "[progress]") {
    std::vector<int> input(3, 1);
    std::ostringstream out;
    SECTION("option") {
        auto options = to(out, std::chrono::milliseconds(0));
        options.enabled = false;
        int sum = 0;
        for (int x : mpp::progress(input, options)) sum += x;
        CHECK(sum == 3);
    }
    SECTION("environment") {
        ::setenv("MPP_PROGRESS", "0", 1);
        int sum = 0;
        for (int x : mpp::progress(input, to(out, std::chrono::milliseconds(0)))) sum += x;
        ::unsetenv("MPP_PROGRESS");
        CHECK(sum == 3);
    }
    CHECK(out.str().empty());
}

TEST_CASE("progress formats durations as mm:ss and h:mm:ss", "[progress]") {
    CHECK(mpp::detail::format_duration(0) == "00:00");
    CHECK(mpp::detail::format_duration(75.2) == "01:15");
    CHECK(mpp::detail::format_duration(3725) == "1:02:05");
    CHECK(mpp::detail::format_duration(-1) == "?");
    CHECK(mpp::detail::format_progress("", 1, 4, 2.0, false) == " 25% 1/4 [00:02<00:06, 2.00 s/it]");
}
