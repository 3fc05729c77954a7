// mpp_bench: issue 6's workloads on mpp, the twin of benchmarks/python/baseline.py.
// Each workload is the median (with min and max) of several runs, timed with steady_clock;
// the output is a table on stdout and, with --json FILE, the JSON that benchmarks/compare.py
// reads (the keys and units are listed once, in compare.py's docstring).
//
//   mpp_bench [--quick] [--processes N] [--json FILE]
#include <mpp/mpp.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point start) {
    return std::chrono::duration<double>(clock_type::now() - start).count();
}

template <class F>
double timed(F&& f) {
    const auto start = clock_type::now();
    f();
    return seconds_since(start);
}

// Keeps results alive so that no loop below is optimised away.
volatile std::uint64_t sink;

// ---------------------------------------------------------------------------
// Task functions. noinline: the serial baselines must really call them, as the workers do.

[[gnu::noinline]] int square(int x) { return x * x; }

[[gnu::noinline]] long long add(long long a, long long b) { return a + b; }

[[gnu::noinline]] std::size_t length(const std::string& payload) { return payload.size(); }

[[gnu::noinline]] std::string make_bytes(std::size_t n) { return std::string(n, '\0'); }

// The CPU-bound item: the same LCG loop as baseline.py's cpu_work.
[[gnu::noinline]] std::uint64_t cpu_work(std::uint64_t iterations) {
    std::uint64_t x = 1;
    for (std::uint64_t i = 0; i < iterations; ++i) x = (x * 1103515245u + 12345u) & 0x7FFFFFFFu;
    return x;
}

void noop() {}

// ---------------------------------------------------------------------------
// Sizes: the same as baseline.py's sizes().

struct Config {
    int runs;
    double min_seconds;  // the throughput rows repeat until their runs took this long (call_seconds)
    std::size_t map_default_n = 200'000;
    std::size_t map_chunksize1_n;
    std::size_t many_tasks_n;
    std::size_t apply_latency_calls;
    std::size_t starmap_n = 200'000;
    std::vector<std::size_t> payload_mib{1, 8, 64};
    std::size_t cpu_items = 64;
    double cpu_item_ms;
    std::uint64_t cpu_iterations = 0;  // calibrated
    std::size_t queue_items;
    std::size_t pipe_round_trips;
    std::size_t pipe_messages;
    std::size_t value_increments_per_process;
    std::size_t lock_pairs;
    std::size_t lock_batch = 10'000;
    std::size_t array_n;
    int cpu_runs;  // the speedup swings by a few percent from run to run on a VM: more samples, steadier median
    int start_stop_samples;
    std::size_t uneven_n;
    double uneven_fast_us = 2.0;  // the slow 1% take 1000x as long
    std::vector<std::size_t> uneven_chunksizes{0, 1, 8, 64, 512};
};

Config sizes(bool quick) {
    Config c;
    c.runs = quick ? 3 : 5;
    c.min_seconds = quick ? 0.1 : 0.5;
    c.map_chunksize1_n = quick ? 5'000 : 20'000;
    c.many_tasks_n = quick ? 5'000 : 20'000;
    c.apply_latency_calls = quick ? 500 : 2'000;
    c.cpu_item_ms = quick ? 5.0 : 10.0;
    c.queue_items = quick ? 10'000 : 50'000;
    c.pipe_round_trips = quick ? 2'000 : 10'000;
    c.pipe_messages = quick ? 10'000 : 50'000;
    c.value_increments_per_process = quick ? 25'000 : 100'000;
    c.lock_pairs = quick ? 200'000 : 1'000'000;
    c.array_n = quick ? 200'000 : 1'000'000;
    c.cpu_runs = quick ? 3 : 9;
    c.start_stop_samples = quick ? 8 : 20;
    c.uneven_n = quick ? 5'000 : 20'000;
    return c;
}

// ---------------------------------------------------------------------------

struct Workload {
    std::string key;
    std::string unit;
    double median, min, max;
    bool higher_is_better;
    std::size_t runs;
};

double median_of(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double percentile(std::vector<double> v, double p) {
    std::sort(v.begin(), v.end());
    auto k = static_cast<std::size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5);
    return v[std::min(k, v.size() - 1)];
}

class Report {
public:
    void add(const std::string& key, const std::string& unit, const std::vector<double>& samples,
             bool higher_is_better) {
        Workload w{key, unit, median_of(samples), *std::min_element(samples.begin(), samples.end()),
                   *std::max_element(samples.begin(), samples.end()), higher_is_better, samples.size()};
        std::printf("  %-34s %14.6g %-8s (min %.6g, max %.6g, %zu runs)\n", key.c_str(), w.median, unit.c_str(), w.min,
                    w.max, w.runs);
        std::fflush(stdout);
        workloads_.push_back(std::move(w));
    }
    const Workload* find(const std::string& key) const {
        for (const auto& w : workloads_)
            if (w.key == key) return &w;
        return nullptr;
    }
    void write_json(const std::string& path, std::size_t processes, bool quick, const Config& c) const {
        std::ofstream out(path);
        if (!out) throw std::runtime_error("mpp_bench: cannot write " + path);
        out.precision(10);
        out << "{\n  \"implementation\": \"mpp\",\n  \"processes\": " << processes
            << ",\n  \"quick\": " << (quick ? "true" : "false") << ",\n  \"config\": {\"runs\": " << c.runs
            << ", \"min_seconds\": " << c.min_seconds << ", \"cpu_runs\": " << c.cpu_runs << ", \"cpu_item_ms\": " << c.cpu_item_ms << ", \"cpu_iterations\": " << c.cpu_iterations
            << ", \"uneven_n\": " << c.uneven_n << ", \"uneven_fast_us\": " << c.uneven_fast_us
            << "},\n  \"workloads\": {";
        for (std::size_t i = 0; i < workloads_.size(); ++i) {
            const auto& w = workloads_[i];
            out << (i ? ",\n" : "\n") << "    \"" << w.key << "\": {\"unit\": \"" << w.unit << "\", \"median\": " << w.median
                << ", \"min\": " << w.min << ", \"max\": " << w.max
                << ", \"higher_is_better\": " << (w.higher_is_better ? "true" : "false") << ", \"runs\": " << w.runs
                << "}";
        }
        out << "\n  }\n}\n";
    }

private:
    std::vector<Workload> workloads_;
};

// This thread's CPU time in seconds: unlike wall time, other programs on the machine do not inflate it.
double thread_cpu_seconds() {
    timespec now{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) * 1e-9;
}

// Iterations of cpu_work that take `ms` milliseconds of CPU here (CPU time, so that a loaded
// machine does not shrink the items).
std::uint64_t calibrate_cpu_iterations(double ms) {
    std::uint64_t iterations = 100'000;
    double t = 0;
    for (;;) {
        t = 1e9;
        for (int i = 0; i < 3; ++i) {
            const double start = thread_cpu_seconds();
            sink = cpu_work(iterations);
            t = std::min(t, thread_cpu_seconds() - start);
        }
        if (t > 0.02) break;
        iterations *= 2;
    }
    return std::max<std::uint64_t>(1, static_cast<std::uint64_t>(static_cast<double>(iterations) * ms / 1000.0 / t));
}

/// Seconds per call of f: one untimed call first (the pool's pages and the heap
/// settle: on a VM where a first touch costs 10 us a page, the first calls of a
/// 200,000-item map are ten times slower than the rest), then at least c.runs
/// timed calls and at least c.min_seconds of them in all, as timeit's autorange
/// does: a 1 ms call is timed hundreds of times, a 1 s call c.runs times.
/// baseline.py's call_seconds is the same rule. `untimed_after` runs after each call.
template <class F, class After = void (*)()>
std::vector<double> call_seconds(const Config& c, F&& f, After&& untimed_after = [] {}) {
    constexpr std::size_t max_runs = 500;
    f();
    untimed_after();
    std::vector<double> seconds;
    double total = 0;
    while (seconds.size() < static_cast<std::size_t>(c.runs) || (total < c.min_seconds && seconds.size() < max_runs)) {
        seconds.push_back(timed(f));
        untimed_after();
        total += seconds.back();
    }
    return seconds;
}

/// `units` per second for each of the timed calls.
std::vector<double> rates_of(double units, std::vector<double> seconds) {
    for (double& s : seconds) s = units / s;
    return seconds;
}

std::vector<int> iota_ints(std::size_t n) {
    std::vector<int> xs(n);
    for (std::size_t i = 0; i < n; ++i) xs[i] = static_cast<int>(i);
    return xs;
}

/// Row 5's reference without mpp: the items dealt round-robin to `processes` forked
/// children, already started and waiting on a pipe when the clock starts, each running
/// its share and reporting on another pipe. Whatever this misses of a perfect speedup
/// is the machine's, not the pool's. Seconds from the start signal to the last report.
double bare_processes_seconds(const std::vector<std::uint64_t>& items, std::size_t processes) {
    int start_pipe[2];
    int done_pipe[2];
    if (::pipe(start_pipe) != 0) throw std::runtime_error("bare processes: pipe failed");
    if (::pipe(done_pipe) != 0) {
        ::close(start_pipe[0]);
        ::close(start_pipe[1]);
        throw std::runtime_error("bare processes: pipe failed");
    }
    std::vector<pid_t> children;
    bool ok = true;
    for (std::size_t w = 0; ok && w < processes; ++w) {
        const pid_t pid = ::fork();
        if (pid == 0) {
            // Only the parent holds the start pipe's write end: if it fails, closing it ends the wait.
            ::close(start_pipe[1]);
            ::close(done_pipe[0]);
            char byte = 0;
            if (::read(start_pipe[0], &byte, 1) != 1) ::_exit(1);
            std::uint64_t sum = 0;
            for (std::size_t i = w; i < items.size(); i += processes) sum += cpu_work(items[i]);
            sink = sum;
            ::_exit(::write(done_pipe[1], &byte, 1) == 1 ? 0 : 1);
        }
        if (pid < 0)
            ok = false;
        else
            children.push_back(pid);
    }
    double seconds = 0;
    if (ok) {
        const std::string go(processes, 'g');
        const auto start = clock_type::now();
        ok = ::write(start_pipe[1], go.data(), go.size()) == static_cast<ssize_t>(go.size());
        for (std::size_t w = 0; ok && w < processes; ++w) {
            char byte = 0;
            ok = ::read(done_pipe[0], &byte, 1) == 1;
        }
        seconds = seconds_since(start);
    }
    for (int fd : {start_pipe[0], start_pipe[1], done_pipe[0], done_pipe[1]}) ::close(fd);
    for (pid_t pid : children) {
        int status = 0;
        ok = ::waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0 && ok;
    }
    if (!ok) throw std::runtime_error("bare processes: a fork, a pipe or a child failed");
    return seconds;
}

void bench_pool_workloads(Report& report, Config& c, std::size_t processes) {
    const int runs = c.runs;
    mpp::Pool pool(processes);
    sink = pool.map(square, iota_ints(1000)).back();  // warm up: workers started, pages touched

    // 1. trivial map
    {
        const auto xs = iota_ints(c.map_default_n);
        const auto seconds = call_seconds(c, [&] { sink = pool.map(square, xs).back(); });
        report.add("map_trivial_default", "tasks/s", rates_of(static_cast<double>(xs.size()), seconds), true);
    }
    {
        const auto xs = iota_ints(c.map_chunksize1_n);
        const auto seconds = call_seconds(c, [&] { sink = pool.map(square, xs, 1).back(); });
        report.add("map_trivial_chunksize1", "tasks/s", rates_of(static_cast<double>(xs.size()), seconds), true);
    }

    // 2. many small tasks, and one task's round trip
    {
        const auto xs = iota_ints(c.many_tasks_n);
        const auto n = static_cast<double>(xs.size());
        const auto imap_unordered_all = [&] {
            std::uint64_t sum = 0;
            for (int y : pool.imap_unordered(square, xs, 1)) sum += static_cast<unsigned>(y);
            sink = sum;
        };
        report.add("imap_unordered_chunksize1", "tasks/s", rates_of(n, call_seconds(c, imap_unordered_all)), true);
        const auto apply_async_all = [&] {
            std::vector<mpp::AsyncResult<int>> handles;
            handles.reserve(xs.size());
            for (int x : xs) handles.push_back(pool.apply_async(square, x));
            std::uint64_t sum = 0;
            for (auto& h : handles) sum += static_cast<unsigned>(h.get());
            sink = sum;
        };
        report.add("apply_async", "tasks/s", rates_of(n, call_seconds(c, apply_async_all)), true);

        std::vector<double> medians, p99s;
        for (int r = 0; r < runs; ++r) {
            std::vector<double> latencies;
            latencies.reserve(c.apply_latency_calls);
            for (std::size_t i = 0; i < c.apply_latency_calls; ++i) {
                const auto start = clock_type::now();
                sink = static_cast<unsigned>(pool.apply(square, static_cast<int>(i)));
                latencies.push_back(seconds_since(start) * 1e6);
            }
            medians.push_back(median_of(latencies));
            p99s.push_back(percentile(latencies, 99));
        }
        report.add("apply_latency_median", "us", medians, false);
        report.add("apply_latency_p99", "us", p99s, false);
    }

    // 3. starmap
    {
        std::vector<std::pair<long long, long long>> pairs(c.starmap_n);
        for (std::size_t i = 0; i < pairs.size(); ++i)
            pairs[i] = {static_cast<long long>(i), static_cast<long long>(pairs.size() - i)};
        const auto seconds = call_seconds(c, [&] { sink = static_cast<std::uint64_t>(pool.starmap(add, pairs).back()); });
        report.add("starmap_default", "tasks/s", rates_of(static_cast<double>(pairs.size()), seconds), true);
    }

    // 4. payloads: to the worker (it returns the length), and back (it makes the bytes)
    for (std::size_t mib : c.payload_mib) {
        const std::size_t nbytes = mib << 20;
        const std::string key = "payload_" + std::to_string(mib) + "MiB_";
        const double megabytes = static_cast<double>(nbytes) / 1e6;
        {
            const std::string payload(nbytes, '\0');
            const auto send = [&] {
                if (pool.apply(length, payload) != nbytes) throw std::runtime_error("payload to worker: wrong length back");
            };
            report.add(key + "to_worker", "MB/s", rates_of(megabytes, call_seconds(c, send)), true);
        }
        std::string got;  // freed after the clock stops, as baseline.py's `del got`
        const auto fetch = [&] {
            got = pool.apply(make_bytes, nbytes);
            if (got.size() != nbytes) throw std::runtime_error("payload from worker: wrong length");
        };
        const auto free_it = [&] { std::string().swap(got); };
        report.add(key + "from_worker", "MB/s", rates_of(megabytes, call_seconds(c, fetch, free_it)), true);
    }

    // 5. CPU-bound items: serial vs parallel, each item calibrated to cpu_item_ms
    {
        c.cpu_iterations = calibrate_cpu_iterations(c.cpu_item_ms);
        const std::vector<std::uint64_t> items(c.cpu_items, c.cpu_iterations);
        std::vector<double> serial, parallel, speedup, efficiency, bare_speedup;
        for (int r = 0; r < c.cpu_runs; ++r) {
            const double ts = timed([&] {
                std::uint64_t sum = 0;
                for (auto it : items) sum += cpu_work(it);
                sink = sum;
            });
            const double tp = timed([&] { sink = pool.map(cpu_work, items).back(); });
            serial.push_back(ts * 1e3);
            parallel.push_back(tp * 1e3);
            speedup.push_back(ts / tp);
            efficiency.push_back(100.0 * ts / tp / static_cast<double>(processes));
            bare_speedup.push_back(ts / bare_processes_seconds(items, processes));
        }
        report.add("cpu_serial_time", "ms", serial, false);
        report.add("cpu_parallel_time", "ms", parallel, false);
        report.add("cpu_speedup", "x", speedup, true);
        report.add("cpu_efficiency", "%", efficiency, true);
        report.add("cpu_speedup_bare_processes", "x", bare_speedup, true);
    }

    // Uneven items for adaptive chunking: 1% (placed pseudo-randomly) are 1000x slower.
    {
        const std::uint64_t fast = std::max<std::uint64_t>(
            1, static_cast<std::uint64_t>(static_cast<double>(c.cpu_iterations) * c.uneven_fast_us / 1000.0 /
                                          c.cpu_item_ms));
        std::vector<std::uint64_t> items(c.uneven_n, fast);
        for (std::size_t i = 0; i < items.size(); ++i) {
            std::uint64_t h = (i + 1) * 0x9E3779B97F4A7C15ull;  // splitmix64 finaliser: a fixed scatter
            h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ull;
            h = (h ^ (h >> 27)) * 0x94D049BB133111EBull;
            if ((h ^ (h >> 31)) % 100 == 0) items[i] = fast * 1000;
        }
        std::map<std::size_t, double> medians;
        std::map<std::size_t, std::vector<double>> times;
        // Interleave the chunksizes run by run, so that a burst of load elsewhere hits all alike.
        for (int r = 0; r < runs; ++r)
            for (std::size_t chunksize : c.uneven_chunksizes)
                times[chunksize].push_back(1e3 * timed([&] { sink = pool.map(cpu_work, items, chunksize).back(); }));
        double best_hand_picked = 1e300;
        for (std::size_t chunksize : c.uneven_chunksizes) {
            report.add("uneven_chunksize_" + (chunksize ? std::to_string(chunksize) : std::string("auto")), "ms",
                       times[chunksize], false);
            medians[chunksize] = median_of(times[chunksize]);
            if (chunksize) best_hand_picked = std::min(best_hand_picked, medians[chunksize]);
        }
        std::vector<double> auto_over_best;
        for (double t : times[0]) auto_over_best.push_back(t / best_hand_picked);
        report.add("uneven_auto_over_best", "x", auto_over_best, false);
    }
}

// Items per second that one child process streams to this one: the child calls
// send(i) for i = 0..n (item 0 is the start signal), and this process is timed
// from the first item on, over n calls of receive().
template <class Send, class Receive>
double streamed_rate(std::size_t n, Send send, Receive receive) {
    mpp::Process producer([send, n]() mutable {
        for (std::size_t i = 0; i <= n; ++i) send(static_cast<int>(i));
    });
    producer.start();
    sink = static_cast<unsigned>(receive());
    const auto start = clock_type::now();
    std::uint64_t sum = 0;
    for (std::size_t i = 0; i < n; ++i) sum += static_cast<unsigned>(receive());
    const double rate = static_cast<double>(n) / seconds_since(start);
    sink = sum;
    producer.join();
    return rate;
}

void bench_primitives(Report& report, const Config& c) {
    const int runs = c.runs;

    // Queue: one producer process, the consumer is this process; timed from the first item.
    {
        std::vector<double> rates;
        for (int r = 0; r < runs; ++r) {
            mpp::Queue<int> q;
            rates.push_back(streamed_rate(c.queue_items, [q](int x) mutable { q.put(x); }, [&q] { return q.get(); }));
        }
        report.add("queue_put_get", "items/s", rates, true);
    }

    // Pipe round trip: the child echoes what it receives.
    {
        std::vector<double> round_trips;
        const std::size_t n = c.pipe_round_trips;
        for (int r = 0; r < runs; ++r) {
            auto ends = mpp::Pipe<int>();
            auto here = ends.first;
            auto there = ends.second;
            mpp::Process echo([there] {
                for (;;) {
                    const int x = there.recv();
                    there.send(x);
                    if (x < 0) return;
                }
            });
            echo.start();
            here.send(0);
            sink = static_cast<unsigned>(here.recv());  // the child is up
            const auto start = clock_type::now();
            for (std::size_t i = 0; i < n; ++i) {
                here.send(static_cast<int>(i));
                sink = static_cast<unsigned>(here.recv());
            }
            round_trips.push_back(seconds_since(start) / static_cast<double>(n) * 1e6);
            here.send(-1);
            sink = static_cast<unsigned>(here.recv());
            echo.join();
        }
        report.add("pipe_round_trip", "us", round_trips, false);
    }

    // Pipe one way: the child sends, this process receives; timed from the first message.
    {
        std::vector<double> rates;
        for (int r = 0; r < runs; ++r) {
            auto ends = mpp::Pipe<int>();
            auto here = ends.first;
            auto there = ends.second;
            rates.push_back(streamed_rate(c.pipe_messages, [there](int x) mutable { there.send(x); },
                                          [&here] { return here.recv(); }));
        }
        report.add("pipe_one_way", "msgs/s", rates, true);
    }

    // Value += 1 under its lock from 2 processes at once.
    {
        std::vector<double> rates;
        const std::size_t n = c.value_increments_per_process;
        for (int r = 0; r < runs; ++r) {
            mpp::Value<long long> value(0);
            mpp::Event go;
            auto incrementer = [value, go, n] {
                go.wait();
                for (std::size_t i = 0; i < n; ++i) {
                    std::scoped_lock hold(value.get_lock());
                    value.store(value.load() + 1);
                }
            };
            mpp::Process a(incrementer), b(incrementer);
            a.start();
            b.start();
            std::this_thread::sleep_for(std::chrono::milliseconds(50));  // let both reach go.wait()
            const auto start = clock_type::now();
            go.set();
            a.join();
            b.join();
            const double elapsed = seconds_since(start);
            if (value.load() != static_cast<long long>(2 * n)) throw std::runtime_error("Value: lost increments");
            rates.push_back(static_cast<double>(2 * n) / elapsed);
        }
        report.add("value_increment_locked_2proc", "ops/s", rates, true);
    }

    // Uncontended Lock acquire + release, timed in short batches: a batch rarely loses the CPU,
    // so the median batch shows the lock's own cost even on a loaded machine.
    {
        std::vector<double> per_pair;
        mpp::Lock lock;
        for (std::size_t b = 0; b < c.lock_pairs / c.lock_batch; ++b) {
            const double t = timed([&] {
                for (std::size_t i = 0; i < c.lock_batch; ++i) {
                    lock.lock();
                    lock.unlock();
                }
            });
            per_pair.push_back(t / static_cast<double>(c.lock_batch) * 1e9);
        }
        report.add("lock_uncontended", "ns", per_pair, false);
    }

    // Array fill: write every element once, under the array's lock.
    {
        std::vector<double> rates;
        mpp::Array<long long> arr(c.array_n);
        for (int r = 0; r < runs; ++r) {
            const double t = timed([&] {
                std::scoped_lock hold(arr.get_lock());
                for (std::size_t i = 0; i < c.array_n; ++i) arr[i] = static_cast<long long>(i);
            });
            rates.push_back(static_cast<double>(c.array_n) / t);
        }
        if (arr[c.array_n - 1] != static_cast<long long>(c.array_n - 1)) throw std::runtime_error("Array: bad fill");
        report.add("array_fill", "items/s", rates, true);
    }
}

/// The forks alone, no pool: a process forks `children` children that exit at
/// once, and reaps them. With children = processes it is what a pool's start and
/// stop cannot go below here (a pool's fork server forks its workers, so it can
/// reap them and start replacements from the construction-time state: processes
/// + 1 forks and exits); with 0 it is one fork, exit and wait (a Process).
double bare_forks_ms(std::size_t children) {
    std::vector<pid_t> pids(children);  // allocated before the fork
    const auto start = clock_type::now();
    const pid_t parent = ::fork();
    if (parent < 0) throw std::runtime_error("bare forks: fork failed");
    if (parent == 0) {
        for (pid_t& pid : pids) {
            pid = ::fork();
            if (pid == 0) ::_exit(0);
            if (pid < 0) ::_exit(1);
        }
        for (pid_t pid : pids) ::waitpid(pid, nullptr, 0);
        ::_exit(0);
    }
    int status = 0;
    ::waitpid(parent, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw std::runtime_error("bare forks: a fork failed");
    return seconds_since(start) * 1e3;
}

void bench_start_stop(Report& report, const Config& c, std::size_t processes) {
    // Each sample of a row is followed by one of its floor, so both see the same machine.
    std::vector<double> times, floor;
    for (int s = 0; s < c.start_stop_samples; ++s) {
        times.push_back(1e3 * timed([&] {
                            mpp::Pool pool(processes);
                            pool.close();
                            pool.join();
                        }));
        floor.push_back(bare_forks_ms(processes));
    }
    report.add("pool_start_stop", "ms", times, false);
    report.add("pool_start_stop_bare_forks", "ms", floor, false);

    times.clear();
    floor.clear();
    for (int s = 0; s < c.start_stop_samples; ++s) {
        times.push_back(1e3 * timed([&] {
                            mpp::Process p(noop);
                            p.start();
                            p.join();
                        }));
        floor.push_back(bare_forks_ms(0));
    }
    report.add("process_start_join", "ms", times, false);
    report.add("process_start_join_bare_fork", "ms", floor, false);
}

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr, "mpp_bench: %s\nusage: mpp_bench [--quick] [--processes N] [--json FILE]\n", why);
    std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
    bool quick = false;
    std::size_t processes = 0;
    std::string json_path;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--quick" || arg == "--smoke") {
            quick = true;
        } else if (arg == "--processes" && i + 1 < argc) {
            const long n = std::strtol(argv[++i], nullptr, 10);
            if (n < 1) usage("--processes must be at least 1");
            processes = static_cast<std::size_t>(n);
        } else if (arg == "--json" && i + 1 < argc) {
            json_path = argv[++i];
        } else {
            usage(("unknown argument " + arg).c_str());
        }
    }
    if (processes == 0) processes = mpp::cpu_count();

    try {
        Config config = sizes(quick);
        Report report;
        std::printf("mpp, %zu processes%s\n", processes, quick ? ", quick" : "");
        const auto started = clock_type::now();
        // Start + stop first, from a parent that holds only what the program needs: each fork
        // copies the parent's page tables, and after the payload rows glibc keeps about 9 MiB
        // in the pool thread's arena (the 8 MiB results raise its mmap threshold), which made
        // this row 20-30% slower when it ran last.
        bench_start_stop(report, config, processes);
        bench_pool_workloads(report, config, processes);
        bench_primitives(report, config);
        std::printf("  (total %.1f s)\n", seconds_since(started));
        if (!json_path.empty()) report.write_json(json_path, processes, quick, config);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "mpp_bench: %s\n", e.what());
        return 1;
    }
    return 0;
}
