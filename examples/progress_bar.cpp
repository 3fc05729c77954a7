// Python (imap_unordered under a tqdm progress bar):
//
//   import time
//   from multiprocessing import Pool
//   from tqdm import tqdm
//
//   def slow_square(x):
//       time.sleep(0.01)
//       return x * x
//
//   if __name__ == '__main__':
//       xs = range(400)
//       with Pool() as pool:
//           total = 0
//           for y in tqdm(pool.imap_unordered(slow_square, xs), total=len(xs)):
//               total += y
//       print(total)
//
// mpp::progress draws the bar on stderr when it is a terminal, a line every few seconds when it is
// not (a CI log), and nothing when MPP_PROGRESS=0.
#include <mpp/pool.hpp>
#include <mpp/progress.hpp>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

static long slow_square(long x) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return x * x;
}

int main(int argc, char** argv) {
    const bool smoke = argc > 1 && std::strcmp(argv[1], "--smoke") == 0;
    const long count = smoke ? 100 : 1000;
    std::vector<long> xs;
    for (long i = 0; i < count; ++i) xs.push_back(i);

    mpp::Pool pool;
    long total = 0;
    long received = 0;
    mpp::progress_options options;
    options.description = "squares";
    for (long y : mpp::progress(pool.imap_unordered(slow_square, xs), xs.size(), options)) {
        total += y;
        ++received;
    }
    const long expected = (count - 1) * count * (2 * count - 1) / 6;
    std::printf("%ld results, sum %ld (expected %ld)\n", received, total, expected);
    return total == expected && received == count ? 0 : 1;
}
