// Python (starmap: each input is a tuple of arguments):
//
//   from multiprocessing import Pool
//
//   def power(base, exponent):
//       return base ** exponent
//
//   if __name__ == '__main__':
//       with Pool() as pool:
//           print(pool.starmap(power, [(2, 10), (3, 4), (10, 3)]))  # [1024, 81, 1000]
//           bases, exponents = range(1, 6), [2] * 5
//           print(pool.starmap(power, zip(bases, exponents)))        # [1, 4, 9, 16, 25]
#include <mpp/pool.hpp>

#include <cstdio>
#include <tuple>
#include <utility>
#include <vector>

static long power(long base, int exponent) {
    long result = 1;
    for (int i = 0; i < exponent; ++i) result *= base;
    return result;
}

static void print(const std::vector<long>& values) {
    std::printf("[");
    for (std::size_t i = 0; i < values.size(); ++i) std::printf("%s%ld", i ? ", " : "", values[i]);
    std::printf("]\n");
}

int main() {  // --smoke changes nothing: the whole program takes milliseconds
    mpp::Pool pool;

    std::vector<std::tuple<long, int>> pairs{{2, 10}, {3, 4}, {10, 3}};
    std::vector<long> first = pool.starmap(power, pairs);
    print(first);

    // zip(bases, exponents): any tuple-like element works, std::pair included.
    std::vector<std::pair<long, int>> zipped;
    for (long base = 1; base <= 5; ++base) zipped.emplace_back(base, 2);
    std::vector<long> second = pool.starmap_async(power, zipped).get();
    print(second);

    return first == std::vector<long>{1024, 81, 1000} && second == std::vector<long>{1, 4, 9, 16, 25} ? 0 : 1;
}
