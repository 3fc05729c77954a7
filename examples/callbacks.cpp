// Python (apply_async with callback= and error_callback=):
//
//   from multiprocessing import Pool
//
//   def square(x):
//       return x * x
//
//   def fail(x):
//       raise ValueError(f'no square for {x}')
//
//   if __name__ == '__main__':
//       results, errors = [], []
//       with Pool(4) as pool:
//           pending = [pool.apply_async(square, (i,), callback=results.append,
//                                       error_callback=errors.append) for i in range(10)]
//           pending.append(pool.apply_async(fail, (7,), callback=results.append,
//                                           error_callback=errors.append))
//           for r in pending: r.wait()
//       print(sorted(results), errors)
//
// In C++ the callbacks are given with on_complete(callback, error_callback). They run on the
// pool's own thread, before the result turns ready(), so after wait() they have run.
#include <mpp/pool.hpp>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

static int square(int x) { return x * x; }
static int fail(int x) { throw std::invalid_argument("no square for " + std::to_string(x)); }  // ValueError

int main() {  // --smoke changes nothing: the whole program takes milliseconds
    std::mutex guard;  // the callbacks run on the pool's thread, main reads on its own
    std::vector<int> results;
    std::vector<std::string> errors;
    auto collect = [&](const int& value) {
        std::scoped_lock lock(guard);
        results.push_back(value);
    };
    auto report = [&](std::exception_ptr error) {
        try {
            std::rethrow_exception(error);
        } catch (const std::invalid_argument& e) {  // the task's own exception type comes back
            std::scoped_lock lock(guard);
            errors.push_back(e.what());
        }
    };

    mpp::Pool pool(4);
    std::vector<mpp::AsyncResult<int>> pending;
    for (int i = 0; i < 10; ++i) pending.push_back(pool.apply_async(square, i).on_complete(collect, report));
    pending.push_back(pool.apply_async(fail, 7).on_complete(collect, report));
    for (auto& r : pending) r.wait();

    std::scoped_lock lock(guard);
    std::sort(results.begin(), results.end());
    std::printf("results:");
    for (int r : results) std::printf(" %d", r);
    std::printf("\nerrors: %s\n", errors.empty() ? "(none)" : errors.front().c_str());

    const std::vector<int> expected{0, 1, 4, 9, 16, 25, 36, 49, 64, 81};
    bool right = results == expected && errors == std::vector<std::string>{"no square for 7"} &&
                 pending.back().ready() && !pending.back().successful();
    return right ? 0 : 1;
}
