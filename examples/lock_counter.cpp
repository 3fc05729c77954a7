// Python (four processes add to one shared counter; the lock makes every += count):
//
//   from multiprocessing import Process, Value, Lock
//
//   def add(counter, lock, n):
//       for _ in range(n):
//           with lock:
//               counter.value += 1
//
//   if __name__ == '__main__':
//       counter, lock = Value('i', 0, lock=False), Lock()
//       procs = [Process(target=add, args=(counter, lock, 10000)) for _ in range(4)]
//       for p in procs: p.start()
//       for p in procs: p.join()
//       print(counter.value)    # 40000, exactly
#include <mpp/process.hpp>
#include <mpp/shared.hpp>
#include <mpp/sync.hpp>

#include <cstdio>
#include <cstring>
#include <mutex>
#include <vector>

static void add(mpp::Value<long> counter, mpp::Lock lock, long n) {
    for (long i = 0; i < n; ++i) {
        std::scoped_lock guard(lock);  // `with lock:`
        counter = counter + 1;         // a read and a write: without the lock, increments get lost
    }
}

int main(int argc, char** argv) {
    const bool smoke = argc > 1 && std::strcmp(argv[1], "--smoke") == 0;
    const long per_process = smoke ? 10000 : 1000000;
    const int process_count = 4;

    mpp::Value<long> counter(0);
    mpp::Lock lock;
    std::vector<mpp::Process> procs;
    for (int i = 0; i < process_count; ++i) procs.emplace_back(add, counter, lock, per_process);
    for (auto& p : procs) p.start();
    bool all_exited_cleanly = true;
    for (auto& p : procs) {
        p.join();
        all_exited_cleanly = all_exited_cleanly && p.exitcode() == 0;
    }

    const long expected = process_count * per_process;
    std::printf("%ld (expected %ld)\n", counter.load(), expected);
    return counter.load() == expected && all_exited_cleanly ? 0 : 1;
}
