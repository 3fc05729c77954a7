// Python (a Queue shared by two producer processes and the consumer in the parent):
//
//   from multiprocessing import Process, Queue
//
//   def producer(q, first, count):
//       for i in range(first, first + count):
//           q.put(i * i)
//       q.put(None)                      # "this producer is done"
//
//   if __name__ == '__main__':
//       q = Queue()
//       producers = [Process(target=producer, args=(q, k * 1000, 1000)) for k in range(2)]
//       for p in producers: p.start()
//       total, done = 0, 0
//       while done < len(producers):
//           item = q.get()
//           if item is None: done += 1
//           else: total += item
//       for p in producers: p.join()
//       print(total)
#include <mpp/process.hpp>
#include <mpp/queue.hpp>

#include <cstdio>
#include <cstring>
#include <optional>
#include <vector>

// std::nullopt plays Python's None: "this producer is done".
static void producer(mpp::Queue<std::optional<long>> q, long first, long count) {
    for (long i = first; i < first + count; ++i) q.put(i * i);
    q.put(std::nullopt);
}

int main(int argc, char** argv) {
    const bool smoke = argc > 1 && std::strcmp(argv[1], "--smoke") == 0;
    const long per_producer = smoke ? 1000 : 100000;
    const int producer_count = 2;

    mpp::Queue<std::optional<long>> q;
    std::vector<mpp::Process> producers;
    for (int k = 0; k < producer_count; ++k) producers.emplace_back(producer, q, k * per_producer, per_producer);
    for (auto& p : producers) p.start();

    long total = 0;
    long received = 0;
    for (int done = 0; done < producer_count;) {
        std::optional<long> item = q.get();
        if (!item) {
            ++done;
        } else {
            total += *item;
            ++received;
        }
    }
    for (auto& p : producers) p.join();

    long n = producer_count * per_producer;  // sum of i*i for i < n
    long expected = (n - 1) * n * (2 * n - 1) / 6;
    std::printf("received %ld items, sum of squares %ld (expected %ld)\n", received, total, expected);
    return total == expected && received == n ? 0 : 1;
}
