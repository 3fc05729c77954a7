// Python (the classic "why use a Pool" demo: waiting tasks, then CPU-bound ones):
//
//   import time
//   from multiprocessing import Pool, cpu_count
//
//   def slow_square(x):
//       time.sleep(1)                      # waits, like a network call
//       return x * x
//
//   def count_primes(segment):             # CPU-bound: primes in [lo, hi) by trial division
//       lo, hi = segment
//       return sum(1 for n in range(lo, hi) if n > 1 and all(n % d for d in range(2, int(n ** 0.5) + 1)))
//
//   if __name__ == '__main__':
//       start = time.perf_counter()
//       serial = [slow_square(x) for x in range(6)]
//       t_serial = time.perf_counter() - start
//       start = time.perf_counter()
//       with Pool(4) as pool:
//           parallel = pool.map(slow_square, range(6))
//       t_parallel = time.perf_counter() - start
//       print(f'sleep: serial {t_serial:.2f} s, Pool(4) {t_parallel:.2f} s, speedup {t_serial / t_parallel:.2f}x')
//
//       width = 15_000
//       segments = [(10**8 + i * width, 10**8 + (i + 1) * width) for i in range(64)]
//       start = time.perf_counter()
//       serial = [count_primes(s) for s in segments]
//       t_serial = time.perf_counter() - start
//       start = time.perf_counter()
//       with Pool() as pool:
//           parallel = pool.map(count_primes, segments)
//       t_parallel = time.perf_counter() - start
//       speedup = t_serial / t_parallel
//       print(f'primes: serial {t_serial:.2f} s, Pool({cpu_count()}) {t_parallel:.2f} s, '
//             f'speedup {speedup:.2f}x, efficiency {speedup / cpu_count():.0%}')
//
// With --smoke (what ctest runs) the tasks sleep 0.1 s and the segments are small; the
// program then checks its results and exits 0 only if they are right (timings vary with
// the machine's load, so they are printed, never judged).
#include <mpp/pool.hpp>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <thread>
#include <utility>
#include <vector>

namespace {

// The sleep length travels with each task, so --smoke can shorten it.
int slow_square(std::pair<int, int> x_and_milliseconds) {
    std::this_thread::sleep_for(std::chrono::milliseconds(x_and_milliseconds.second));
    return x_and_milliseconds.first * x_and_milliseconds.first;
}

bool is_prime(long long n) {
    if (n < 2) return false;
    if (n % 2 == 0) return n == 2;
    for (long long d = 3; d * d <= n; d += 2)
        if (n % d == 0) return false;
    return true;
}

/// Primes in [lo, hi): every segment has the same width, so the same amount of work.
int count_primes(std::pair<long long, long long> segment) {
    int count = 0;
    for (long long n = segment.first; n < segment.second; ++n) count += is_prime(n);
    return count;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
    const bool smoke = argc > 1 && std::strcmp(argv[1], "--smoke") == 0;
    bool right = true;

    // ---- 1. six tasks that wait: serial vs Pool(4) ----
    const int sleep_ms = smoke ? 100 : 1000;
    std::vector<std::pair<int, int>> waits;
    for (int x = 0; x < 6; ++x) waits.emplace_back(x, sleep_ms);

    auto start = std::chrono::steady_clock::now();
    std::vector<int> serial_squares;
    for (const auto& w : waits) serial_squares.push_back(slow_square(w));
    const double sleep_serial = seconds_since(start);

    start = std::chrono::steady_clock::now();
    std::vector<int> parallel_squares;
    {
        mpp::Pool pool(4);  // started inside the timing, as in Python's `with Pool(4)`
        parallel_squares = pool.map(slow_square, waits, 1);  // Python's map picks chunksize 1 here too
    }
    const double sleep_parallel = seconds_since(start);

    const std::vector<int> expected_squares{0, 1, 4, 9, 16, 25};
    right = right && serial_squares == expected_squares && parallel_squares == expected_squares;
    std::printf("sleep  (6 tasks of %.1f s): serial %6.2f s, Pool(4) %6.2f s, speedup %5.2fx\n", sleep_ms / 1000.0,
                sleep_serial, sleep_parallel, sleep_serial / sleep_parallel);

    // ---- 2. 64 equal CPU-bound tasks: serial vs Pool() with cpu_count() workers ----
    const long long base = smoke ? 0 : 100'000'000;
    const long long width = smoke ? 1'000 : 15'000;
    std::vector<std::pair<long long, long long>> segments;
    for (long long i = 0; i < 64; ++i) segments.emplace_back(base + i * width, base + (i + 1) * width);

    start = std::chrono::steady_clock::now();
    std::vector<int> serial_counts;
    for (const auto& segment : segments) serial_counts.push_back(count_primes(segment));
    const double cpu_serial = seconds_since(start);

    const std::size_t workers = mpp::cpu_count();
    start = std::chrono::steady_clock::now();
    std::vector<int> parallel_counts;
    {
        mpp::Pool pool;  // cpu_count() workers
        parallel_counts = pool.map(count_primes, segments);
    }
    const double cpu_parallel = seconds_since(start);

    const long long primes = std::accumulate(parallel_counts.begin(), parallel_counts.end(), 0LL);
    right = right && parallel_counts == serial_counts;
    if (smoke) right = right && primes == 6413;  // pi(64000), the primes below 64 * 1000
    const double speedup = cpu_serial / cpu_parallel;
    std::printf("primes (64 segments, %lld found): serial %6.2f s, Pool(%zu) %6.2f s, speedup %5.2fx, "
                "efficiency %3.0f%%\n",
                primes, cpu_serial, workers, cpu_parallel, speedup, 100.0 * speedup / static_cast<double>(workers));

    if (!right) std::printf("WRONG RESULTS\n");
    return right ? 0 : 1;
}
