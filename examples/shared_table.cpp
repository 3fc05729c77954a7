// Python (a table built before the pool is read by every worker for free: fork shares the
// parent's memory copy-on-write, so only the index crosses to the worker):
//
//   from multiprocessing import Pool
//
//   TABLE = None
//
//   def row_sum(row):
//       start = row * WIDTH
//       return sum(TABLE[start:start + WIDTH])
//
//   if __name__ == '__main__':
//       TABLE = [i % 1000 for i in range(ROWS * WIDTH)]   # built before Pool() forks the workers
//       with Pool() as pool:
//           print(sum(pool.map(row_sum, range(ROWS))))
//
// Only works because the workers are forked after the table exists: mpp forks its workers when
// the Pool is constructed (and replacement workers start from that same state).
#include <mpp/pool.hpp>
#include <mpp/serializer.hpp>

#include <cstdio>
#include <cstring>
#include <numeric>
#include <vector>

namespace {

constexpr std::size_t width = 4096;
std::vector<long> table;  // global and read-only once the pool exists

long row_sum(std::size_t row) {
    auto first = table.begin() + static_cast<std::ptrdiff_t>(row * width);
    return std::accumulate(first, first + static_cast<std::ptrdiff_t>(width), 0L);
}

}  // namespace

int main(int argc, char** argv) {
    const bool smoke = argc > 1 && std::strcmp(argv[1], "--smoke") == 0;
    const std::size_t rows = smoke ? 256 : 8192;  // 8 MiB or 256 MiB of table

    table.resize(rows * width);
    for (std::size_t i = 0; i < table.size(); ++i) table[i] = static_cast<long>(i % 1000);

    mpp::Pool pool;  // forks now: every worker sees `table` without a byte being copied
    std::vector<std::size_t> row_numbers(rows);
    std::iota(row_numbers.begin(), row_numbers.end(), std::size_t{0});
    std::vector<long> sums = pool.map(row_sum, row_numbers);

    long total = std::accumulate(sums.begin(), sums.end(), 0L);
    long expected = std::accumulate(table.begin(), table.end(), 0L);
    std::printf("table of %zu MiB, %zu rows summed by %zu workers; each task shipped %zu bytes of argument\n",
                table.size() * sizeof(long) >> 20, rows, pool.size(), mpp::dumps(std::size_t{0}).size());
    std::printf("sum %ld (expected %ld)\n", total, expected);
    return total == expected ? 0 : 1;
}
