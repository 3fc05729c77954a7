// Python (initializer= loads an expensive resource once per worker, not once per task):
//
//   import os
//   from multiprocessing import Pool
//
//   model = None
//
//   def load_model():
//       global model
//       model = {word: len(word) for word in open('/usr/share/dict/words').read().split()}  # slow
//
//   def lookup(word):
//       return os.getpid(), model.get(word, -1)
//
//   if __name__ == '__main__':
//       with Pool(2, initializer=load_model) as pool:
//           print(pool.map(lookup, ['fork', 'exec', 'wait']))
//
// Here the "model" is a table that takes a moment to compute. Each task reports how many times
// its worker process ran the loader: always exactly once, however many tasks that worker ran.
#include <mpp/pool.hpp>

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

namespace {

std::map<std::string, int> model;  // per worker: filled by the initializer in each worker process
int loads_in_this_process = 0;

void load_model() {
    ++loads_in_this_process;
    for (int i = 0; i < 200000; ++i) model["word" + std::to_string(i)] = i;  // the slow part
}

// (pid of the worker, times that worker loaded the model, value looked up)
std::tuple<int, int, int> lookup(const std::string& word) {
    auto found = model.find(word);
    return {static_cast<int>(::getpid()), loads_in_this_process, found == model.end() ? -1 : found->second};
}

}  // namespace

int main(int argc, char** argv) {
    const bool smoke = argc > 1 && std::strcmp(argv[1], "--smoke") == 0;
    const int word_count = smoke ? 200 : 20000;
    std::vector<std::string> words;
    for (int i = 0; i < word_count; ++i) words.push_back("word" + std::to_string(i * 7 % 250000));

    mpp::PoolOptions options;
    options.processes = 2;
    options.initializer = load_model;
    mpp::Pool pool(options);
    auto answers = pool.map(lookup, words);

    bool right = loads_in_this_process == 0;  // the parent never ran the loader
    std::set<int> workers;
    for (std::size_t i = 0; i < answers.size(); ++i) {
        auto [pid, loads, value] = answers[i];
        int index = static_cast<int>(i) * 7 % 250000;
        right = right && loads == 1 && value == (index < 200000 ? index : -1);
        workers.insert(pid);
    }
    std::printf("%zu lookups answered by %zu worker(s); every worker loaded the model exactly once: %s\n",
                answers.size(), workers.size(), right ? "yes" : "NO");
    return right ? 0 : 1;
}
