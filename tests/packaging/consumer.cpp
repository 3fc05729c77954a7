// The program every packaging test builds against an installed or embedded mpp: it includes the
// umbrella header and prints "mpp consumer ok" only if a round trip (and a pool map) gives the right answer.
#include <mpp/mpp.hpp>

#include <cstdio>
#include <string>
#include <vector>

#if __has_include(<mpp/pool.hpp>)
static int square(int x) { return x * x; }
#endif

int main() {
    std::vector<std::string> words{"fork", "exec", "wait"};
    auto decoded = mpp::loads<std::vector<std::string>>(mpp::dumps(words));
    if (decoded != words) return 1;
#if __has_include(<mpp/pool.hpp>)
    mpp::Pool pool(2);
    std::vector<int> squares = pool.map(square, std::vector<int>{1, 2, 3});
    if (squares != std::vector<int>{1, 4, 9}) return 2;
#endif
    std::puts("mpp consumer ok");
    return 0;
}
