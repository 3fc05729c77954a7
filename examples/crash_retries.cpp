// Python (a task that kills its worker: Pool.map never returns, bpo-22393; with
// concurrent.futures the whole executor is lost to BrokenProcessPool):
//
//   import os, signal
//   from multiprocessing import Pool
//
//   def fragile(x):
//       if x == 13 and not os.path.exists(MARKER):   # crashes the first time it runs, only
//           open(MARKER, 'w').close()
//           os.kill(os.getpid(), signal.SIGKILL)
//       return x * x
//
//   if __name__ == '__main__':
//       with Pool(2) as pool:
//           print(pool.map(fragile, range(20)))     # hangs forever
//
// With mpp the dead worker costs only the tasks it held: PoolOptions::retries re-runs them on the
// replacement worker, and without retries the map throws mpp::WorkerLost instead of hanging.
#include <mpp/errors.hpp>
#include <mpp/pool.hpp>

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <string>
#include <vector>

namespace {

std::string marker;  // set before the pool forks, so every worker knows the path

long fragile(long x) {
    if (x == 13) {
        // O_EXCL: only the first attempt creates the marker, and that attempt dies.
        int fd = ::open(marker.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600);
        if (fd >= 0) {
            ::close(fd);
            ::raise(SIGKILL);
        }
    }
    return x * x;
}

bool run(unsigned retries) {
    ::unlink(marker.c_str());
    mpp::PoolOptions options;
    options.processes = 2;
    options.retries = retries;
    mpp::Pool pool(options);
    std::vector<long> xs;
    for (long i = 0; i < 20; ++i) xs.push_back(i);
    try {
        std::vector<long> squares = pool.map(fragile, xs, 1);
        bool right = true;
        for (long i = 0; i < 20; ++i) right = right && squares[static_cast<std::size_t>(i)] == i * i;
        std::printf("retries=%u: all 20 results, correct: %s; the pool still has %zu workers\n", retries,
                    right ? "yes" : "NO", pool.pids().size());
        return retries > 0 && right && pool.pids().size() == 2;
    } catch (const mpp::WorkerLost& lost) {
        std::printf("retries=%u: mpp::WorkerLost: %s (signal %d); the pool still has %zu workers\n", retries,
                    lost.what(), lost.signal(), pool.pids().size());
        return retries == 0 && lost.signal() == SIGKILL && pool.pids().size() == 2 &&
               pool.map(fragile, std::vector<long>{13}).front() == 169;  // and it keeps working
    }
}

}  // namespace

int main() {  // --smoke changes nothing: the whole program takes well under a second
    char directory[] = "/tmp/mpp-crash-retries-XXXXXX";
    if (::mkdtemp(directory) == nullptr) return 1;
    marker = std::string(directory) + "/crashed-once";
    bool right = run(0) && run(1);
    ::unlink(marker.c_str());
    ::rmdir(directory);
    return right ? 0 : 1;
}
