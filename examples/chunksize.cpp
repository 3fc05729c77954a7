// Python (how chunksize changes the cost of many tiny tasks):
//
//   import time
//   from multiprocessing import Pool
//
//   def f(x):
//       return x * x
//
//   if __name__ == '__main__':
//       xs = range(200_000)
//       with Pool() as pool:
//           for chunksize in (1, 10, 100, 1000, None):    # None: the pool chooses
//               start = time.perf_counter()
//               pool.map(f, xs, chunksize)
//               print(chunksize, time.perf_counter() - start)
//
// In C++, chunksize 0 means "the pool chooses" (and adapts while it runs).
#include <mpp/pool.hpp>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

static long f(long x) { return x * x; }

int main(int argc, char** argv) {
    const bool smoke = argc > 1 && std::strcmp(argv[1], "--smoke") == 0;
    const long count = smoke ? 20000 : 200000;
    std::vector<long> xs(static_cast<std::size_t>(count));
    for (long i = 0; i < count; ++i) xs[static_cast<std::size_t>(i)] = i;

    mpp::Pool pool;
    std::printf("%ld tasks on %zu workers\n%10s %12s %14s\n", count, pool.size(), "chunksize", "seconds", "tasks/s");
    bool right = true;
    const std::size_t chunksizes[] = {1, 10, 100, 1000, 0};
    for (std::size_t chunksize : chunksizes) {
        auto start = std::chrono::steady_clock::now();
        std::vector<long> squares = pool.map(f, xs, chunksize);
        double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        for (long i = 0; i < count; ++i) right = right && squares[static_cast<std::size_t>(i)] == i * i;
        std::printf("%10s %12.4f %14.0f\n", chunksize ? std::to_string(chunksize).c_str() : "auto", seconds,
                    static_cast<double>(count) / seconds);
    }
    return right ? 0 : 1;
}
