// Python (the multiprocessing docs' first Pool example, with imap and imap_unordered):
//
//   from multiprocessing import Pool
//
//   def f(x):
//       return x * x
//
//   if __name__ == '__main__':
//       with Pool(5) as p:
//           print(p.map(f, [1, 2, 3]))                    # [1, 4, 9]
//           print(list(p.imap(f, range(10))))             # in input order, as results arrive
//           print(sorted(p.imap_unordered(f, range(10)))) # in completion order, so sort to compare
#include <mpp/pool.hpp>

#include <algorithm>
#include <cstdio>
#include <vector>

static int f(int x) { return x * x; }

static void print(const char* label, const std::vector<int>& values) {
    std::printf("%s[", label);
    for (std::size_t i = 0; i < values.size(); ++i) std::printf("%s%d", i ? ", " : "", values[i]);
    std::printf("]\n");
}

int main() {  // --smoke changes nothing: the whole program takes milliseconds
    mpp::Pool p(5);

    std::vector<int> mapped = p.map(f, std::vector<int>{1, 2, 3});
    print("map:            ", mapped);

    std::vector<int> inputs{0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    std::vector<int> ordered;
    for (int y : p.imap(f, inputs)) ordered.push_back(y);  // lazily, in input order
    print("imap:           ", ordered);

    std::vector<int> unordered;
    for (int y : p.imap_unordered(f, inputs)) unordered.push_back(y);  // as each result arrives
    std::sort(unordered.begin(), unordered.end());
    print("imap_unordered: ", unordered);

    const std::vector<int> expected{0, 1, 4, 9, 16, 25, 36, 49, 64, 81};
    return mapped == std::vector<int>{1, 4, 9} && ordered == expected && unordered == expected ? 0 : 1;
}
