// mpp::progress(range): yields the elements of any input range unchanged and in order while
// drawing a progress report on stderr: a bar (done/total, rate, elapsed, ETA) on a terminal,
// a plain line every few seconds otherwise, nothing when disabled (MPP_PROGRESS=0).
// The one guarantee: the wrapped range sees exactly the same begin/++/* calls as without it.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <iterator>
#include <optional>
#include <ranges>
#include <string>
#include <type_traits>
#include <utility>

namespace mpp {

/// How and where progress() reports. The defaults draw on stderr.
struct progress_options {
    std::ostream* out = nullptr;       // nullptr = std::cerr, terminal detected with isatty(2)
    std::optional<bool> terminal = {};  // force bar (true) or line (false) mode; default: detect
    bool enabled = true;                // false = draw nothing (so does the environment MPP_PROGRESS=0)
    std::string description = {};       // printed before the counts, e.g. "squares"
    std::chrono::milliseconds bar_interval{100};    // terminal: redraw at most this often (10/s)
    std::chrono::milliseconds line_interval{3000};  // not a terminal: one line at most this often
};

namespace detail {

// Elapsed or remaining time as tqdm prints it: mm:ss, or h:mm:ss past an hour.
inline std::string format_duration(double seconds) {
    if (!(seconds >= 0) || seconds > 359999999.0) return "?";
    auto total = static_cast<long long>(seconds + 0.5);
    char text[32];
    if (total >= 3600)
        std::snprintf(text, sizeof text, "%lld:%02lld:%02lld", total / 3600, total / 60 % 60, total % 60);
    else
        std::snprintf(text, sizeof text, "%02lld:%02lld", total / 60, total % 60);
    return text;
}

// One report: "desc: 42%|#####-----| 420/1000 [00:03<00:04, 123.4 it/s]" with a bar,
// the same without the bar (and without % and ETA when the total is unknown).
inline std::string format_progress(const std::string& description, std::size_t done,
                                   std::optional<std::size_t> total, double elapsed, bool with_bar) {
    std::string line;
    if (!description.empty()) line += description + ": ";
    double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0.0;
    char rate_text[48];
    if (rate >= 1.0 || rate == 0.0)
        std::snprintf(rate_text, sizeof rate_text, "%.1f it/s", rate);
    else
        std::snprintf(rate_text, sizeof rate_text, "%.2f s/it", 1.0 / rate);
    if (total) {
        double fraction = *total == 0 ? 1.0 : std::min(1.0, static_cast<double>(done) / static_cast<double>(*total));
        char percent[16];
        std::snprintf(percent, sizeof percent, "%3d%%", static_cast<int>(fraction * 100.0));
        line += percent;
        if (with_bar) {
            constexpr int width = 30;
            int filled = static_cast<int>(fraction * width);
            line += '|';
            line.append(static_cast<std::size_t>(filled), '#');
            line.append(static_cast<std::size_t>(width - filled), '-');
            line += '|';
        }
        line += ' ' + std::to_string(done) + '/' + std::to_string(*total);
        std::string eta = "?";
        if (done >= *total)
            eta = format_duration(0);
        else if (rate > 0)
            eta = format_duration(static_cast<double>(*total - done) / rate);
        line += " [" + format_duration(elapsed) + '<' + eta + ", " + rate_text + ']';
    } else {
        line += std::to_string(done) + " [" + format_duration(elapsed) + ", " + rate_text + ']';
    }
    return line;
}

inline bool progress_disabled_by_environment() {
    const char* setting = std::getenv("MPP_PROGRESS");
    return setting != nullptr && (std::strcmp(setting, "0") == 0 || std::strcmp(setting, "off") == 0 ||
                                  std::strcmp(setting, "false") == 0);
}

// An rvalue range is owned (moved in); an lvalue range is only referenced and must outlive us.
template <class R>
struct progress_base_holder {
    R range;
    R& get() noexcept { return range; }
};
template <class R>
struct progress_base_holder<R&> {
    R* range;
    R& get() noexcept { return *range; }
};

}  // namespace detail

/// The range progress() returns: an input range over the same elements as the wrapped one.
/// Move-only when the wrapped range is; iterate it once.
template <class R>
class progress_range {
    using base_type = std::remove_reference_t<R>;
    using base_iterator = std::ranges::iterator_t<base_type>;
    using base_sentinel = std::ranges::sentinel_t<base_type>;
    using clock = std::chrono::steady_clock;

public:
    class iterator {
    public:
        using iterator_concept = std::input_iterator_tag;
        using value_type = std::iter_value_t<base_iterator>;
        using difference_type = std::iter_difference_t<base_iterator>;

        iterator() = default;
        iterator(progress_range* owner, base_iterator current, base_sentinel last)
            : owner_(owner), current_(std::move(current)), last_(std::move(last)) {}

        decltype(auto) operator*() const { return *current_; }
        iterator& operator++() {
            ++current_;
            owner_->advanced();
            return *this;
        }
        void operator++(int) { ++*this; }

        // Reaching the end is where the final report is drawn, so a completed loop always ends
        // with the exact count whatever the throttling skipped.
        friend bool operator==(const iterator& it, std::default_sentinel_t) { return it.at_end(); }

    private:
        bool at_end() const {
            bool reached = current_ == last_;
            if (reached) owner_->finish();
            return reached;
        }

        progress_range* owner_ = nullptr;
        base_iterator current_{};
        base_sentinel last_{};
    };

    progress_range(R&& range, std::optional<std::size_t> total, progress_options options)
        : base_(hold(std::forward<R>(range))), total_(total), options_(std::move(options)) {
        if (!total_) {
            if constexpr (std::ranges::sized_range<base_type>)
                total_ = static_cast<std::size_t>(std::ranges::size(base_.get()));
        }
        if (detail::progress_disabled_by_environment()) options_.enabled = false;
        out_ = options_.out != nullptr ? options_.out : &std::cerr;
        terminal_ = options_.terminal.value_or(options_.out == nullptr && ::isatty(STDERR_FILENO) == 1);
    }

    progress_range(progress_range&&) = default;
    progress_range& operator=(progress_range&&) = default;
    progress_range(const progress_range&) = delete;
    progress_range& operator=(const progress_range&) = delete;

    /// A loop left early (break, exception) still gets its final report.
    ~progress_range() {
        if (started_ && !finished_) {
            try {
                finish();
            } catch (...) {  // a destructor must not throw because stderr failed
            }
        }
    }

    iterator begin() {
        started_ = true;
        start_ = clock::now();
        last_draw_ = start_;
        auto& range = base_.get();
        if (terminal_) draw(clock::now());  // show 0/total at once on a terminal
        return iterator(this, std::ranges::begin(range), std::ranges::end(range));
    }
    std::default_sentinel_t end() const noexcept { return {}; }

    /// Elements yielded so far, and the total if known.
    std::size_t done() const noexcept { return done_; }
    std::optional<std::size_t> total() const noexcept { return total_; }

private:
    static detail::progress_base_holder<R> hold(R&& range) {
        if constexpr (std::is_lvalue_reference_v<R>)
            return {&range};
        else
            return {std::move(range)};
    }

    void advanced() {
        ++done_;
        if (!options_.enabled) return;
        auto now = clock::now();
        auto interval = terminal_ ? options_.bar_interval : options_.line_interval;
        if (now - last_draw_ >= interval) draw(now);
    }

    void finish() {
        if (finished_) return;
        finished_ = true;
        if (!options_.enabled) return;
        // A line stream already showing the final count does not need it twice.
        if (!terminal_ && drawn_count_ && *drawn_count_ == done_) return;
        draw(clock::now());
        if (terminal_) *out_ << '\n' << std::flush;
    }

    void draw(clock::time_point now) {
        if (!options_.enabled) return;
        last_draw_ = now;
        drawn_count_ = done_;
        double elapsed = std::chrono::duration<double>(now - start_).count();
        std::string report = detail::format_progress(options_.description, done_, total_, elapsed, terminal_);
        if (terminal_)
            *out_ << '\r' << report << "\x1b[K" << std::flush;  // \x1b[K clears what a longer line left
        else
            *out_ << report << '\n' << std::flush;
    }

    detail::progress_base_holder<R> base_;
    std::optional<std::size_t> total_;
    progress_options options_;
    std::ostream* out_ = nullptr;
    bool terminal_ = false;
    bool started_ = false;
    bool finished_ = false;
    std::size_t done_ = 0;
    std::optional<std::size_t> drawn_count_;
    clock::time_point start_{};
    clock::time_point last_draw_{};
};

/// Wraps `range` (moved in if an rvalue, referenced if an lvalue) and reports progress on stderr.
/// The total is std::ranges::size(range) for sized ranges and omitted otherwise.
template <std::ranges::input_range R>
progress_range<R> progress(R&& range, progress_options options = {}) {
    return progress_range<R>(std::forward<R>(range), std::nullopt, std::move(options));
}

/// The same with an explicit total, for unsized inputs (generators, imap over a filtered view).
template <std::ranges::input_range R>
progress_range<R> progress(R&& range, std::size_t total, progress_options options = {}) {
    return progress_range<R>(std::forward<R>(range), total, std::move(options));
}

}  // namespace mpp
