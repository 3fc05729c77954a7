// Tests for the crash-proof pool (issue 4): a worker that dies (signal, abort,
// _exit, segfault, out of memory, task_timeout, kill-storm) costs exactly the
// task it was running; the pool replaces it and goes on; a killed parent leaves
// no worker behind; and no zombie, fd or /dev/shm entry outlives a pool.
#include <mpp/pool.hpp>
#include <mpp/shared.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <numeric>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "sanitizers.hpp"

// The crashes below are deliberate: keep them plain signals under the sanitizers
// too (their SEGV handler would turn a segfault into a report and exit code 1).
extern "C" const char* __asan_default_options() { return "handle_segv=0:handle_abort=0"; }
extern "C" const char* __tsan_default_options() { return "handle_segv=0:handle_abort=0:die_after_fork=0"; }

namespace {

using namespace std::chrono_literals;

/// Every wait in these tests is bounded: a bug fails the test instead of hanging CI.
constexpr auto hang_guard = 60s;

/// Aborts the test binary (with a message naming the test) if a scope lasts
/// longer than `limit`: the last line of defence against a hang inside a
/// blocking call that has no timeout of its own (join, imap's ++, a destructor).
class hang_watchdog {
public:
    explicit hang_watchdog(std::string what, std::chrono::seconds limit = 240s)
        : thread_([this, what = std::move(what), limit] {
              std::unique_lock lock(mutex_);
              started_ = true;
              started_changed_.notify_one();
              if (!done_changed_.wait_for(lock, limit, [this] { return done_; })) {
                  std::fprintf(stderr, "pool_crash_test: '%s' hung for %llds; aborting\n", what.c_str(),
                               static_cast<long long>(limit.count()));
                  std::abort();
              }
          }) {
        // Return only once the thread sleeps: a test that forks next must not fork
        // while it is still starting up inside the allocator. (ASan's allocator lock,
        // held at such a fork, stayed locked in the child and hung its pool thread.)
        std::unique_lock lock(mutex_);
        started_changed_.wait(lock, [this] { return started_; });
    }
    ~hang_watchdog() {
        {
            std::lock_guard lock(mutex_);
            done_ = true;
        }
        done_changed_.notify_one();
        thread_.join();
    }
    hang_watchdog(const hang_watchdog&) = delete;
    hang_watchdog& operator=(const hang_watchdog&) = delete;

private:
    std::mutex mutex_;
    std::condition_variable done_changed_;
    std::condition_variable started_changed_;
    bool done_ = false;
    bool started_ = false;
    std::thread thread_;  // last: starts once the members above exist
};

// ---- looking at processes through /proc ----------------------------------------

struct proc_stat {
    char state = '?';
    pid_t ppid = -1;
};

/// State and parent of a process, or nothing once it is gone (reaped).
std::optional<proc_stat> stat_of(pid_t pid) {
    std::ifstream file("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!file || !std::getline(file, line)) return std::nullopt;
    const auto name_end = line.rfind(')');  // the command name may contain spaces and parentheses
    if (name_end == std::string::npos) return std::nullopt;
    std::istringstream rest(line.substr(name_end + 1));
    proc_stat stat;
    rest >> stat.state >> stat.ppid;
    return stat;
}

pid_t parent_of(pid_t pid) {
    const auto stat = stat_of(pid);
    return stat ? stat->ppid : -1;
}

/// Running (not a zombie, not reaped).
bool is_alive(pid_t pid) {
    const auto stat = stat_of(pid);
    return stat && stat->state != 'Z' && stat->state != 'X';
}

/// Every process whose parent is `parent`, zombies included (this kernel may lack
/// /proc/<pid>/task/<tid>/children, so scan /proc).
std::set<pid_t> children_of(pid_t parent) {
    std::set<pid_t> children;
    std::error_code ignored;
    for (const auto& entry : std::filesystem::directory_iterator("/proc", ignored)) {
        const std::string name = entry.path().filename().string();
        if (name.empty() || !std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; }))
            continue;
        const pid_t pid = static_cast<pid_t>(std::stol(name));
        if (parent_of(pid) == parent) children.insert(pid);
    }
    return children;
}

std::set<pid_t> my_children() { return children_of(::getpid()); }

std::size_t open_fd_count() {
    std::size_t count = 0;
    for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) ++count;
    return count;
}

std::set<std::string> dev_shm_listing() {
    std::set<std::string> names;
    std::error_code ignored;
    for (const auto& entry : std::filesystem::directory_iterator("/dev/shm", ignored))
        names.insert(entry.path().filename().string());
    return names;
}

/// Polls `condition` every few milliseconds until it holds or `limit` passes.
template <class Condition>
bool eventually(Condition&& condition, std::chrono::milliseconds limit = 20s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
        if (condition()) return true;
        if (std::chrono::steady_clock::now() > deadline) return condition();
        std::this_thread::sleep_for(5ms);
    }
}

bool contains(const std::vector<pid_t>& pids, pid_t pid) { return std::find(pids.begin(), pids.end(), pid) != pids.end(); }

std::set<pid_t> as_set(const std::vector<pid_t>& pids) { return {pids.begin(), pids.end()}; }

/// SIGKILLs `pid` only while it is still a child of `server` (the pool's fork
/// server): through a pidfd, so a recycled pid can never hit a stranger.
bool kill_worker(pid_t pid, pid_t server) {
    const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (pidfd < 0) return false;
    const bool sent = is_alive(pid) && parent_of(pid) == server &&
                      ::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0) == 0;
    ::close(pidfd);
    return sent;
}

/// A background thread that SIGKILLs a random worker of `pool` every 5-20 ms (by default).
class kill_storm {
public:
    explicit kill_storm(const mpp::Pool& pool, unsigned seed = 20261122, int min_pause_ms = 5, int max_pause_ms = 20)
        : server_(parent_of(pool.pids().at(0))),
          thread_([this, &pool, seed, min_pause_ms, max_pause_ms] { run(pool, seed, min_pause_ms, max_pause_ms); }) {}
    ~kill_storm() { stop(); }
    kill_storm(const kill_storm&) = delete;
    kill_storm& operator=(const kill_storm&) = delete;

    void stop() {
        stopping_.store(true);
        if (thread_.joinable()) thread_.join();
    }
    std::size_t kills() const { return kills_.load(); }
    /// Samples of pool.pids() that did not have size() entries.
    std::size_t short_pid_lists() const { return short_pid_lists_.load(); }

private:
    void run(const mpp::Pool& pool, unsigned seed, int min_pause_ms, int max_pause_ms) {
        std::mt19937 random(seed);
        std::uniform_int_distribution<int> pause_ms(min_pause_ms, max_pause_ms);
        while (!stopping_.load()) {
            std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms(random)));
            const std::vector<pid_t> pids = pool.pids();
            if (pids.size() != pool.size()) ++short_pid_lists_;
            if (pids.empty()) continue;
            if (kill_worker(pids[random() % pids.size()], server_)) ++kills_;
        }
    }

    pid_t server_;
    std::atomic<bool> stopping_{false};
    std::atomic<std::size_t> kills_{0};
    std::atomic<std::size_t> short_pid_lists_{0};
    std::thread thread_;  // last: starts once the members above exist
};

/// A fresh directory under the system temp dir, removed with its contents.
class temp_dir {
public:
    temp_dir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "mpp_crash_XXXXXX").string();
        if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
        path_ = pattern;
    }
    ~temp_dir() {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    std::string file(const std::string& name) const { return (path_ / name).string(); }

private:
    std::filesystem::path path_;
};

std::size_t file_size_or_zero(const std::string& path) {
    std::error_code ignored;
    const auto size = std::filesystem::file_size(path, ignored);
    return ignored ? 0 : static_cast<std::size_t>(size);
}

/// Catches the WorkerLost a result fails with; any other outcome fails the test.
template <class T>
mpp::WorkerLost worker_lost_from(mpp::AsyncResult<T>& result) {
    try {
        (void)result.get(hang_guard);
    } catch (const mpp::WorkerLost& lost) {
        return lost;
    }
    FAIL("the task succeeded, but its worker should have died");
    throw std::logic_error("unreachable");
}

// ---- tasks ------------------------------------------------------------------------

/// The crashes are deliberate: no core files for them, and the default action
/// for the fatal signals (a forked worker inherits this test binary's Catch2
/// handlers, which would print a bogus test report from inside the worker).
void prepare_to_crash() {
    const rlimit none{0, 0};
    ::setrlimit(RLIMIT_CORE, &none);
    for (int fatal : {SIGABRT, SIGSEGV, SIGBUS, SIGILL, SIGFPE}) ::signal(fatal, SIG_DFL);
}

int square(int x) { return x * x; }

std::vector<int> squares_upto(int n) {
    std::vector<int> out(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) out[static_cast<std::size_t>(i)] = i * i;
    return out;
}

std::vector<int> iota_upto(int n) {
    std::vector<int> out(static_cast<std::size_t>(n));
    std::iota(out.begin(), out.end(), 0);
    return out;
}

int die_by_sigkill(int) {
    prepare_to_crash();
    ::raise(SIGKILL);
    return 0;
}

int die_by_abort(int) {
    prepare_to_crash();
    std::abort();
}

int die_by_exit_3(int) { ::_exit(3); }

// Read at run time, so the compiler cannot see (and "optimise") the null store.
volatile std::uintptr_t null_address = 0;

// (no_sanitize: UBSan's null check would end the worker with its own report first.)
__attribute__((no_sanitize("undefined"))) int die_by_segfault(int) {
    prepare_to_crash();
    *reinterpret_cast<volatile int*>(null_address) = 1;
    return 0;
}

/// Lowers the address-space limit to just above what the worker maps now.
void limit_address_space_to_current_plus(std::size_t headroom) {
    std::ifstream statm("/proc/self/statm");
    std::size_t pages = 0;
    statm >> pages;
    const auto limit = static_cast<rlim_t>(pages * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)) + headroom);
    const rlimit lowered{limit, limit};
    ::setrlimit(RLIMIT_AS, &lowered);
}

/// Runs out of memory where no exception may escape (noexcept), as in a
/// destructor or a callback: std::terminate, so the worker dies by SIGABRT.
int die_out_of_memory(int) noexcept {
    prepare_to_crash();
    limit_address_space_to_current_plus(std::size_t{64} << 20);
    void* block = ::operator new(std::size_t{1} << 30);  // a call, not a new-expression: never elided
    static_cast<volatile char*>(block)[0] = 1;
    ::operator delete(block);
    return 1;
}

#ifndef MPP_TEST_SANITIZED
// (Under ASan/TSan a failed operator new reports and exits instead of throwing.)
/// Runs out of memory under the same limit, but lets std::bad_alloc escape: an
/// ordinary task error. The limit is restored on the way out, so the worker lives on.
int throw_out_of_memory(int) {
    rlimit saved{};
    ::getrlimit(RLIMIT_AS, &saved);
    struct restore_limit {
        rlimit limit;
        ~restore_limit() { ::setrlimit(RLIMIT_AS, &limit); }
    } restore{saved};
    limit_address_space_to_current_plus(std::size_t{64} << 20);
    void* block = ::operator new(std::size_t{1} << 30);
    static_cast<volatile char*>(block)[0] = 1;
    ::operator delete(block);
    return 1;
}
#endif

int square_but_crash_on_7(int x) {
    if (x == 7) die_by_sigkill(x);
    return x * x;
}

/// Crashes the first time (when the marker file does not exist yet), then succeeds.
int crash_the_first_time(std::string marker) {
    if (::access(marker.c_str(), F_OK) != 0) {
        const int fd = ::open(marker.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        if (fd >= 0) ::close(fd);
        die_by_sigkill(0);
    }
    return 42;
}

std::uint64_t checksum(const std::string& text) {
    std::uint64_t sum = 1469598103934665603ull;
    for (unsigned char c : text) sum = (sum ^ c) * 1099511628211ull;
    return sum ^ text.size();
}

std::string big_text(std::size_t bytes, int seed) {
    std::string text(bytes, '\0');
    for (std::size_t i = 0; i < bytes; ++i) text[i] = static_cast<char>((i * 37 + static_cast<std::size_t>(seed)) % 251);
    return text;
}

/// Reads its (large, staged) argument, then crashes the first time.
std::uint64_t checksum_crashing_the_first_time(const std::string& text, std::string marker) {
    const std::uint64_t sum = checksum(text);
    crash_the_first_time(std::move(marker));
    return sum;
}

/// A large result whose encoding dies halfway, its bytes half written to the staging area.
struct dies_while_encoded {
    std::size_t bytes = 0;
};
}  // namespace

template <>
struct mpp::codec<dies_while_encoded> {
    static void save(mpp::writer& out, const dies_while_encoded& value) {
        const std::string half(value.bytes / 2, 'h');
        out.write(half.data(), half.size());
        die_by_sigkill(0);
    }
    static dies_while_encoded load(mpp::reader&) { return {}; }
};

namespace {
dies_while_encoded make_dying_result(std::size_t bytes) { return {bytes}; }
std::string make_big_text(std::size_t bytes, int seed) { return big_text(bytes, seed); }

/// Appends one byte to `log` per run, then crashes: the log's size counts the runs.
int crash_counting_runs(std::string log) {
    const int fd = ::open(log.c_str(), O_CREAT | O_WRONLY | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0) {
        (void)!::write(fd, "x", 1);
        ::close(fd);
    }
    return die_by_sigkill(0);
}

int sleep_seconds(int seconds) {
    std::this_thread::sleep_for(std::chrono::seconds(seconds));
    return seconds;
}

/// A task that takes a little while, so kill-storms land mid-map.
int slow_square(int x) {
    std::this_thread::sleep_for(100us);
    return x * x;
}

int pid_after_a_nap(int) {
    std::this_thread::sleep_for(25ms);
    return static_cast<int>(::getpid());
}

int worker_pid(int) { return static_cast<int>(::getpid()); }

std::mutex lock_the_parent_holds;

int square_under_the_parents_lock(int x) {
    std::lock_guard guard(lock_the_parent_holds);
    return x * x;
}

std::uint32_t big_value(std::size_t i) { return static_cast<std::uint32_t>(i * 2654435761u); }

std::vector<std::uint32_t> big_result(std::size_t bytes) {
    std::vector<std::uint32_t> values(bytes / sizeof(std::uint32_t));
    for (std::size_t i = 0; i < values.size(); ++i) values[i] = big_value(i);
    return values;
}

bool is_big_result(const std::vector<std::uint32_t>& values, std::size_t bytes) {
    if (values.size() != bytes / sizeof(std::uint32_t)) return false;
    for (std::size_t i = 0; i < values.size(); ++i)
        if (values[i] != big_value(i)) return false;
    return true;
}

constexpr std::size_t mid_write_bytes = std::size_t{32} << 20;

/// Writes its worker's pid to `announce` (atomically, through a rename), then returns 32 MiB.
std::vector<std::uint32_t> big_result_announcing_pid(std::string announce) {
    const std::string staged = announce + ".tmp";
    std::ofstream(staged) << ::getpid() << '\n';
    std::filesystem::rename(staged, announce);
    return big_result(mid_write_bytes);
}

/// Reads the pid a task announced, waiting (bounded) for the file to appear.
pid_t announced_pid(const std::string& announce) {
    pid_t pid = -1;
    eventually([&] {
        std::ifstream file(announce);
        return static_cast<bool>(file >> pid);
    });
    return pid;
}

std::vector<std::uint32_t> one_mebibyte(int) { return big_result(std::size_t{1} << 20); }

/// How a worker ended: a signal, or (signal 0) an exit code.
struct death {
    int signal;
    int exit_code;
};

/// The checks every crash test shares: WorkerLost with the right detail (one of
/// `accepted`), the dead worker reaped and replaced by the same fork server, the
/// pool still works.
void check_worker_death_is_contained(int (*task)(int), std::vector<death> accepted) {
    hang_watchdog watchdog("a crashing task");
    {
        mpp::Pool pool(2);
        const std::vector<pid_t> before = pool.pids();
        REQUIRE(before.size() == 2);
        const pid_t server = parent_of(before[0]);
        REQUIRE(server > 0);

        auto result = pool.apply_async(task, 0);
        const mpp::WorkerLost lost = worker_lost_from(result);
        INFO("WorkerLost: " << lost.what());
        CHECK(std::any_of(accepted.begin(), accepted.end(), [&](const death& expected) {
            return lost.signal() == expected.signal && (expected.signal != 0 || lost.exit_code() == expected.exit_code);
        }));
        CHECK(contains(before, lost.pid()));

        // Replaced before the loss was reported: pids() is whole and fresh already.
        const std::vector<pid_t> after = pool.pids();
        CHECK(after.size() == pool.size());
        CHECK_FALSE(contains(after, lost.pid()));
        for (pid_t pid : after) {
            CHECK(is_alive(pid));
            CHECK(parent_of(pid) == server);
        }
        // Reaped before it was reported: not even a zombie child of the server.
        CHECK(children_of(server).count(lost.pid()) == 0);

        CHECK(pool.map(square, iota_upto(100)) == squares_upto(100));
        CHECK(pool.apply(square, 9) == 81);
    }
    CHECK(my_children().empty());
}

}  // namespace

// ---- one worker dies ------------------------------------------------------------

TEST_CASE("a task that raises SIGKILL fails with WorkerLost naming SIGKILL and the pool goes on", "[pool][crash]") {
    check_worker_death_is_contained(die_by_sigkill, {{SIGKILL, 0}});
}

TEST_CASE("a task that calls abort() fails with WorkerLost naming SIGABRT and the pool goes on", "[pool][crash]") {
    check_worker_death_is_contained(die_by_abort, {{SIGABRT, 0}});
}

TEST_CASE("a task that calls _exit(3) fails with WorkerLost carrying exit code 3 and the pool goes on",
          "[pool][crash]") {
    check_worker_death_is_contained(die_by_exit_3, {{0, 3}});
}

TEST_CASE("a task that segfaults fails with WorkerLost naming SIGSEGV and the pool goes on", "[pool][crash]") {
    check_worker_death_is_contained(die_by_segfault, {{SIGSEGV, 0}});
}

TEST_CASE("a task that exhausts memory under an rlimit where it cannot throw fails with WorkerLost naming SIGABRT",
          "[pool][crash]") {
#ifdef MPP_TEST_SANITIZED
    // The sanitizer's allocator reports the exhaustion and ends the worker itself:
    // abort, or its exitcode (1 for ASan, 66 for TSan) unless abort_on_error is set.
    check_worker_death_is_contained(die_out_of_memory, {{SIGABRT, 0}, {0, 1}, {0, 66}});
#else
    check_worker_death_is_contained(die_out_of_memory, {{SIGABRT, 0}});
#endif
}

#ifndef MPP_TEST_SANITIZED
TEST_CASE("a task that exhausts memory under an rlimit and throws bad_alloc fails with std::bad_alloc and its worker lives on",
          "[pool][crash]") {
    hang_watchdog watchdog("bad_alloc task");
    mpp::Pool pool(1);
    const std::vector<pid_t> before = pool.pids();
    CHECK_THROWS_AS(pool.apply_async(throw_out_of_memory, 0).get(hang_guard), std::bad_alloc);
    CHECK(pool.pids() == before);
    CHECK(pool.apply_async(worker_pid, 0).get(hang_guard) == before.at(0));
    CHECK(pool.map(square, iota_upto(50)) == squares_upto(50));
}
#endif

TEST_CASE("only the crashing task of a map fails and every other task completes", "[pool][crash]") {
    hang_watchdog watchdog("crash inside a map");
    mpp::Pool pool(2);

    SECTION("map_async reports the crash as WorkerLost") {
        auto result = pool.map_async(square_but_crash_on_7, iota_upto(20));
        const mpp::WorkerLost lost = worker_lost_from(result);
        CHECK(lost.signal() == SIGKILL);
    }
    SECTION("imap yields every result but item 7's, which throws WorkerLost; in chunks of 1, 5 and 20") {
        for (std::size_t chunksize : {std::size_t{1}, std::size_t{5}, std::size_t{20}}) {
            INFO("chunksize " << chunksize);
            auto results = pool.imap(square_but_crash_on_7, iota_upto(20), chunksize);
            int index = 0;
            for (auto it = results.begin(); it != results.end(); ++it, ++index) {
                if (index == 7)
                    CHECK_THROWS_AS(*it, mpp::WorkerLost);
                else
                    CHECK(*it == index * index);
            }
            CHECK(index == 20);
        }
    }
    SECTION("apply_async per item: 19 values and one WorkerLost") {
        std::vector<mpp::AsyncResult<int>> results;
        for (int i = 0; i < 20; ++i) results.push_back(pool.apply_async(square_but_crash_on_7, i));
        for (int i = 0; i < 20; ++i) {
            if (i == 7)
                CHECK(worker_lost_from(results[7]).signal() == SIGKILL);
            else
                CHECK(results[static_cast<std::size_t>(i)].get(hang_guard) == i * i);
        }
    }
    CHECK(pool.map(square, iota_upto(20), 3) == squares_upto(20));
    CHECK(pool.pids().size() == 2);
}

// ---- retries ----------------------------------------------------------------------

TEST_CASE("apply reading an idle worker's result itself reports that worker's death and honours retries and timeouts",
          "[pool][crash][apply]") {
    hang_watchdog watchdog("apply and a dying worker");
    {
        mpp::Pool pool(2);
        (void)pool.pids();  // both workers up and idle: apply takes the caller's own path
        CHECK(pool.apply(square, 3) == 9);
        CHECK_THROWS_AS(pool.apply(die_by_sigkill, 0), mpp::WorkerLost);
        CHECK(pool.apply(square, 4) == 16);
        CHECK_THROWS_AS(pool.apply(die_by_exit_3, 0), mpp::WorkerLost);
        CHECK(pool.apply(square, 5) == 25);
    }
    {
        temp_dir dir;
        mpp::Pool pool(mpp::PoolOptions{.processes = 2, .retries = 1});
        (void)pool.pids();
        CHECK(pool.apply(crash_the_first_time, dir.file("marker")) == 42);
        CHECK(std::filesystem::exists(dir.file("marker")));  // the first run did crash
    }
    {
        mpp::Pool pool(mpp::PoolOptions{.processes = 2, .task_timeout = std::chrono::milliseconds(200)});
        (void)pool.pids();
        CHECK_THROWS_AS(pool.apply(sleep_seconds, 30), mpp::TaskTimeout);
        CHECK(pool.apply(square, 6) == 36);
    }
    CHECK(my_children().empty());
}

TEST_CASE("a task that crashes its worker the first time succeeds with retries = 1", "[pool][crash][retries]") {
    hang_watchdog watchdog("retries = 1");
    temp_dir dir;
    mpp::Pool pool(mpp::PoolOptions{.processes = 2, .retries = 1});
    const std::vector<pid_t> before = pool.pids();
    CHECK(pool.apply_async(crash_the_first_time, dir.file("marker")).get(hang_guard) == 42);
    CHECK(std::filesystem::exists(dir.file("marker")));  // the first run did crash
    CHECK(pool.pids() != before);  // and its worker was replaced
}

TEST_CASE("a worker killed after reading a staged 16 MiB argument: the retry reads the same bytes",
          "[pool][crash][retries][large]") {
    hang_watchdog watchdog("staged argument retry");
    temp_dir dir;
    mpp::Pool pool(mpp::PoolOptions{.processes = 2, .retries = 1});
    const std::string text = big_text(std::size_t{16} << 20, 5);
    CHECK(pool.apply_async(checksum_crashing_the_first_time, text, dir.file("marker")).get(hang_guard) == checksum(text));
    CHECK(std::filesystem::exists(dir.file("marker")));  // the first run did crash
    CHECK(pool.apply_async(checksum_crashing_the_first_time, text, dir.file("marker")).get(hang_guard) == checksum(text));
}

TEST_CASE("a worker killed while encoding a large result fails only that task and its successor still sends large results",
          "[pool][crash][large]") {
    hang_watchdog watchdog("staged result crash");
    mpp::Pool pool(1);  // one slot: the successor uses the same staging area
    for (int round = 0; round < 3; ++round) {
        INFO("round " << round);
        auto lost = pool.apply_async(make_dying_result, std::size_t{8} << 20);
        CHECK(worker_lost_from(lost).signal() == SIGKILL);
        CHECK(pool.apply_async(make_big_text, std::size_t{8} << 20, round).get(hang_guard) == big_text(std::size_t{8} << 20, round));
        CHECK(pool.apply_async(make_big_text, std::size_t{100}, round).get(hang_guard) == big_text(100, round));
    }
}

TEST_CASE("a task that crashes its worker the first time fails with WorkerLost when retries = 0",
          "[pool][crash][retries]") {
    hang_watchdog watchdog("retries = 0");
    temp_dir dir;
    mpp::Pool pool(2);
    auto result = pool.apply_async(crash_the_first_time, dir.file("marker"));
    CHECK(worker_lost_from(result).signal() == SIGKILL);
    CHECK(pool.apply_async(crash_the_first_time, dir.file("marker")).get(hang_guard) == 42);
}

TEST_CASE("a task that always crashes runs exactly retries + 1 times and then fails with WorkerLost",
          "[pool][crash][retries]") {
    hang_watchdog watchdog("retries count");
    temp_dir dir;
    for (unsigned retries : {0u, 1u, 3u}) {
        INFO("retries = " << retries);
        mpp::PoolOptions options;
        options.processes = 2;
        options.retries = retries;
        mpp::Pool pool(options);
        const std::string log = dir.file("runs" + std::to_string(retries));
        auto result = pool.apply_async(crash_counting_runs, log);
        CHECK(worker_lost_from(result).signal() == SIGKILL);
        CHECK(file_size_or_zero(log) == retries + 1);
        CHECK(pool.map(square, iota_upto(10)) == squares_upto(10));
    }
}

// ---- kill-storms --------------------------------------------------------------------

TEST_CASE("a 20000-task map completes with every result correct while workers are SIGKILLed every 5-20 ms",
          "[pool][crash][storm]") {
    hang_watchdog watchdog("kill-storm map");
    mpp::PoolOptions options;
    options.processes = 4;
    options.retries = 100;
    mpp::Pool pool(options);
    const std::vector<pid_t> before = pool.pids();
    constexpr int tasks = 20000;
    std::size_t kills = 0;
    std::size_t short_pid_lists = 0;
    {
        kill_storm storm(pool);
        auto result = pool.map_async(slow_square, iota_upto(tasks));
        const auto values = result.get(120s);
        storm.stop();
        kills = storm.kills();
        short_pid_lists = storm.short_pid_lists();
        CHECK(values == squares_upto(tasks));
    }
    INFO("workers killed: " << kills);
    CHECK(kills > 0);
    CHECK(short_pid_lists == 0);
    CHECK(pool.pids().size() == 4);
    CHECK(pool.pids() != before);
    CHECK(pool.map(square, iota_upto(100)) == squares_upto(100));
}

TEST_CASE("imap and apply_async results stay correct and in order through a kill-storm", "[pool][crash][storm]") {
    hang_watchdog watchdog("kill-storm imap");
    mpp::PoolOptions options;
    options.processes = 3;
    options.retries = 100;
    mpp::Pool pool(options);
    kill_storm storm(pool, 7);
    std::vector<mpp::AsyncResult<int>> singles;
    for (int i = 0; i < 300; ++i) singles.push_back(pool.apply_async(slow_square, i));
    int index = 0;
    for (int value : pool.imap(slow_square, iota_upto(3000), 7)) {
        CHECK(value == index * index);
        ++index;
    }
    CHECK(index == 3000);
    for (int i = 0; i < 300; ++i) CHECK(singles[static_cast<std::size_t>(i)].get(hang_guard) == i * i);
    storm.stop();
    CHECK(storm.kills() > 0);
}

TEST_CASE("terminate during a kill-storm returns and every result completes or fails with PoolTerminated",
          "[pool][crash][storm]") {
    hang_watchdog watchdog("terminate during a kill-storm");
    {
        mpp::PoolOptions options;
        options.processes = 4;
        options.retries = 100;
        mpp::Pool pool(options);
        const pid_t server = parent_of(pool.pids().at(0));
        kill_storm storm(pool, 99);
        auto mapped = pool.map_async(slow_square, iota_upto(20000));
        std::vector<mpp::AsyncResult<int>> singles;
        for (int i = 0; i < 200; ++i) singles.push_back(pool.apply_async(slow_square, i));
        std::this_thread::sleep_for(300ms);
        pool.terminate();
        storm.stop();
        pool.join();

        // get() throwing anything but PoolTerminated (WorkerLost, TimeoutError) fails the test.
        std::optional<std::vector<int>> map_values;
        try {
            map_values = mapped.get(hang_guard);
        } catch (const mpp::PoolTerminated&) {
        }
        if (map_values) CHECK(*map_values == squares_upto(20000));
        std::size_t completed = 0;
        std::size_t terminated = 0;
        for (int i = 0; i < 200; ++i) {
            try {
                const int value = singles[static_cast<std::size_t>(i)].get(hang_guard);
                CHECK(value == i * i);
                ++completed;
            } catch (const mpp::PoolTerminated&) {
                ++terminated;
            }
        }
        INFO("completed " << completed << ", terminated " << terminated);
        CHECK(completed + terminated == 200);
        CHECK(terminated > 0);  // terminate() came long before 20,000 slow tasks could finish
        CHECK_THROWS_AS(pool.apply_async(square, 1), std::logic_error);
        CHECK_FALSE(is_alive(server));
    }
    CHECK(my_children().empty());
}

TEST_CASE("close and join during a kill-storm finish every submitted task", "[pool][crash][storm]") {
    hang_watchdog watchdog("close during a kill-storm");
    mpp::PoolOptions options;
    options.processes = 3;
    options.retries = 100;
    std::optional<mpp::AsyncResult<std::vector<int>>> mapped;
    std::vector<mpp::AsyncResult<int>> singles;
    {
        mpp::Pool pool(options);
        kill_storm storm(pool, 11);
        mapped.emplace(pool.map_async(slow_square, iota_upto(3000)));
        for (int i = 0; i < 100; ++i) singles.push_back(pool.apply_async(slow_square, i));
        pool.close();
        pool.join();  // the watchdog turns a hang here into a failure
        storm.stop();
        CHECK(storm.kills() > 0);
    }
    CHECK(mapped->get(hang_guard) == squares_upto(3000));
    for (int i = 0; i < 100; ++i) CHECK(singles[static_cast<std::size_t>(i)].get(hang_guard) == i * i);
    CHECK(my_children().empty());
}

TEST_CASE("a SIGKILLed fork server fails the pool's unfinished work instead of hanging", "[pool][crash][server]") {
    hang_watchdog watchdog("fork server killed");
    {
        mpp::Pool pool(2);
        const std::vector<pid_t> workers = pool.pids();
        const pid_t server = parent_of(workers.at(0));
        REQUIRE(server > 0);
        auto mapped = pool.map_async(pid_after_a_nap, iota_upto(400), 1);  // about 5 s of work
        std::this_thread::sleep_for(100ms);
        REQUIRE(::kill(server, SIGKILL) == 0);
        // Its workers die with it (PR_SET_PDEATHSIG); the pool must notice and fail the rest.
        CHECK(mapped.wait_for(hang_guard) == std::future_status::ready);
        CHECK_THROWS_WITH(mapped.get(hang_guard), Catch::Contains("fork server"));
        CHECK(eventually([&] { return std::none_of(workers.begin(), workers.end(), is_alive); }));
    }
    CHECK(my_children().empty());
}

TEST_CASE("a worker killed while writing a 32 MiB result never hangs the parent and the task is re-run",
          "[pool][crash][midwrite]") {
    hang_watchdog watchdog("death mid-write");
    temp_dir dir;
    mpp::PoolOptions options;
    options.processes = 2;
    options.ring_bytes = 16384;  // the result streams through in 2048 pieces: the worker blocks mid-message
    options.retries = 0;         // a death after the task finished is not the task's fault: no retry is used
    mpp::Pool pool(options);
    const pid_t server = parent_of(pool.pids().at(0));
    std::size_t killed_before_delivery = 0;
    for (int round = 0; round < 3; ++round) {
        INFO("round " << round);
        const std::string announce = dir.file("pid" + std::to_string(round));
        auto result = pool.apply_async(big_result_announcing_pid, announce);
        const pid_t worker = announced_pid(announce);
        REQUIRE(worker > 0);
        // Once the task has started, the worker only sleeps when the result ring is
        // full, i.e. in the middle of writing the 32 MiB message: kill it then.
        REQUIRE(eventually([&] {
            const auto stat = stat_of(worker);
            return !stat || stat->state == 'S' || result.ready();
        }));
        const bool delivered = result.ready();
        if (kill_worker(worker, server) && !delivered) ++killed_before_delivery;
        const auto values = result.get(hang_guard);  // WorkerLost here would mean the task was blamed
        CHECK(is_big_result(values, mid_write_bytes));
        CHECK(eventually([&] { return !contains(pool.pids(), worker); }));
    }
    CHECK(killed_before_delivery > 0);
    CHECK(pool.pids().size() == 2);
    CHECK(pool.map(square, iota_upto(100)) == squares_upto(100));
}

TEST_CASE("large results survive a kill-storm: every 1 MiB result arrives whole", "[pool][crash][storm][midwrite]") {
    hang_watchdog watchdog("large results in a kill-storm");
    mpp::PoolOptions options;
    options.processes = 2;
    options.retries = 1000;  // a storm faster than a task (under TSan) would otherwise spend the retries
    options.ring_bytes = 64 << 10;
    mpp::Pool pool(options);
    kill_storm storm(pool, 3, 10, 40);
    auto results = pool.map_async(one_mebibyte, iota_upto(24), 1).get(120s);
    storm.stop();
    REQUIRE(results.size() == 24);
    for (const auto& values : results) CHECK(is_big_result(values, std::size_t{1} << 20));
    CHECK(storm.kills() > 0);
}

// ---- timeouts and recycling ----------------------------------------------------------

TEST_CASE("a task running past task_timeout fails with TaskTimeout while its worker is replaced and the others complete",
          "[pool][crash][timeout]") {
    hang_watchdog watchdog("task_timeout");
    mpp::PoolOptions options;
    options.processes = 2;
    options.task_timeout = 200ms;
    mpp::Pool pool(options);
    const std::vector<pid_t> before = pool.pids();
    const pid_t server = parent_of(before[0]);

    auto stuck = pool.apply_async(sleep_seconds, 10);  // if it were not stopped, it would return 10
    std::vector<mpp::AsyncResult<int>> quick;
    for (int i = 0; i < 20; ++i) quick.push_back(pool.apply_async(square, i));
    CHECK_THROWS_AS(stuck.get(hang_guard), mpp::TaskTimeout);
    for (int i = 0; i < 20; ++i) CHECK(quick[static_cast<std::size_t>(i)].get(hang_guard) == i * i);

    const std::vector<pid_t> after = pool.pids();
    CHECK(after.size() == 2);
    std::size_t replaced = 0;
    for (pid_t pid : before) replaced += contains(after, pid) ? 0 : 1;
    CHECK(replaced == 1);
    for (pid_t pid : after) CHECK(parent_of(pid) == server);
    CHECK(pool.map(square, iota_upto(100)) == squares_upto(100));
}

TEST_CASE("maxtasksperchild replaces workers through the fork server and leaves no zombie",
          "[pool][crash][recycle]") {
    hang_watchdog watchdog("maxtasksperchild");
    mpp::PoolOptions options;
    options.processes = 2;
    options.maxtasksperchild = 1;
    mpp::Pool pool(options);
    const pid_t server = parent_of(pool.pids().at(0));

    const std::vector<int> seen = pool.map(worker_pid, iota_upto(20));
    CHECK(std::set<int>(seen.begin(), seen.end()).size() == 20);  // one task per worker
    CHECK(pool.pids().size() == 2);
    // Every finished worker was reaped by the server; only the current two remain.
    CHECK(eventually([&] {
        const std::vector<pid_t> now = pool.pids();
        return children_of(server) == as_set(now) && std::all_of(now.begin(), now.end(), is_alive);
    }));
}

TEST_CASE("a respawned worker does not deadlock on a std::mutex a parent thread holds", "[pool][crash][recycle]") {
    hang_watchdog watchdog("respawn with a parent lock held");
    mpp::PoolOptions options;
    options.processes = 2;
    options.maxtasksperchild = 1;  // every task after the first two runs in a respawned worker
    mpp::Pool pool(options);
    std::optional<std::vector<int>> values;
    {
        std::unique_lock held(lock_the_parent_holds);  // held by this thread while workers are respawned
        auto result = pool.map_async(square_under_the_parents_lock, iota_upto(12), 1);
        const bool ready = result.wait_for(hang_guard) == std::future_status::ready;
        held.unlock();
        if (!ready) pool.terminate();  // stuck workers would block the destructor's join
        REQUIRE(ready);
        values = result.get();
    }
    CHECK(*values == squares_upto(12));
}

// ---- signals and the parent's death -------------------------------------------------

TEST_CASE("workers and the fork server ignore SIGINT: they live on and the next map works", "[pool][crash][signals]") {
    hang_watchdog watchdog("SIGINT");
    mpp::Pool pool(2);
    const std::vector<pid_t> before = pool.pids();
    const pid_t server = parent_of(before[0]);
    for (pid_t pid : before) REQUIRE(::kill(pid, SIGINT) == 0);
    REQUIRE(::kill(server, SIGINT) == 0);

    // Each worker running a task after kill() returned means it handled the signal.
    const std::vector<int> seen = pool.map(pid_after_a_nap, iota_upto(40), 1);
    CHECK(std::set<pid_t>(seen.begin(), seen.end()) == as_set(before));
    CHECK(pool.pids() == before);
    for (pid_t pid : before) CHECK(is_alive(pid));
    CHECK(is_alive(server));
}

TEST_CASE("a SIGKILLed parent leaves no worker and no fork server running", "[pool][crash][orphans]") {
    hang_watchdog watchdog("parent SIGKILL");
    int report[2];
    REQUIRE(::pipe2(report, O_CLOEXEC) == 0);
    const pid_t parent = ::fork();
    REQUIRE(parent >= 0);
    if (parent == 0) {
        // The pool's parent: report the pids, then wait to be killed. Never returns
        // into Catch2; every way out is _exit.
        ::close(report[0]);
        try {
            mpp::Pool pool(2);
            const std::vector<pid_t> workers = pool.pids();
            const std::array<pid_t, 3> pids{workers.at(0), workers.at(1), parent_of(workers.at(0))};
            if (::write(report[1], pids.data(), sizeof pids) != static_cast<ssize_t>(sizeof pids)) ::_exit(2);
            for (;;) ::pause();
        } catch (...) {
            ::_exit(1);
        }
    }
    ::close(report[1]);

    std::array<pid_t, 3> pids{};
    pollfd readable{report[0], POLLIN, 0};
    const bool reported = ::poll(&readable, 1, 60000) == 1 &&
                          ::read(report[0], pids.data(), sizeof pids) == static_cast<ssize_t>(sizeof pids);
    const bool all_alive_before = reported && std::all_of(pids.begin(), pids.end(), is_alive);
    ::kill(parent, SIGKILL);
    int status = 0;
    const pid_t reaped = ::waitpid(parent, &status, 0);
    ::close(report[0]);
    REQUIRE(reaped == parent);
    REQUIRE(reported);
    CHECK(WIFSIGNALED(status));
    for (pid_t pid : pids) CHECK(pid > 0);
    CHECK(all_alive_before);

    const auto killed_at = std::chrono::steady_clock::now();
    const bool all_gone = eventually([&] { return std::none_of(pids.begin(), pids.end(), is_alive); }, 10s);
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - killed_at);
    INFO("workers " << pids[0] << ", " << pids[1] << ", fork server " << pids[2] << "; gone after " << took.count()
                    << " ms");
    CHECK(all_gone);
    if (!all_gone)
        for (pid_t pid : pids) ::kill(pid, SIGKILL);  // leave nothing behind even when failing
    CHECK(my_children().empty());
}

// ---- nothing left behind ----------------------------------------------------------

TEST_CASE("a pool closed and joined at once still starts every worker, and join leaves no child behind",
          "[pool][crash][leaks]") {
    hang_watchdog watchdog("close at once");
    // The constructor returns while the fork server forks the workers and the
    // joiner reaps the server: a close that overtakes the workers must neither
    // skip one nor leave the server (or a worker) for later.
    for (int round = 0; round < 20; ++round) {
        mpp::Value<int> started(0);
        mpp::PoolOptions options;
        options.processes = 3;
        options.initializer = [started] {
            std::scoped_lock hold(started.get_lock());
            started.store(started.load() + 1);
        };
        {
            mpp::Pool pool(options);
            if (round % 2 == 1) CHECK(pool.pids().size() == 3);
            pool.close();
            pool.join();
            CHECK(my_children().empty());
        }
        CHECK(started.load() == 3);
    }
}

TEST_CASE("many pool lifetimes with crashes and terminates leak no fd and no child and nothing in /dev/shm",
          "[pool][crash][leaks]") {
    hang_watchdog watchdog("pool lifetimes");
#ifdef MPP_TEST_SANITIZED
    constexpr int lifetimes = 200;  // fork is much slower under the sanitizers
#else
    constexpr int lifetimes = 1000;
#endif
    { mpp::Pool warm_up(2); }  // one-time state (the shared segment) is not a leak
    const std::size_t fds_before = open_fd_count();
    const std::set<std::string> shm_before = dev_shm_listing();
    REQUIRE(my_children().empty());

    for (int i = 0; i < lifetimes; ++i) {
        mpp::Pool pool(2);
        if (i % 50 == 0) {
            // No named shared memory: nothing the pool maps lives in /dev/shm.
            std::ifstream maps("/proc/" + std::to_string(pool.pids().at(0)) + "/maps");
            std::string line;
            bool named_shm = false;
            while (std::getline(maps, line)) named_shm = named_shm || line.find("/dev/shm/") != std::string::npos;
            CHECK_FALSE(named_shm);
        }
        if (i % 10 == 0) {
            auto crashed = pool.apply_async(die_by_sigkill, i);
            CHECK(worker_lost_from(crashed).signal() == SIGKILL);
        }
        if (i % 10 == 5) {
            pool.terminate();
            continue;
        }
        REQUIRE(pool.apply_async(square, i).get(hang_guard) == i * i);
    }

    CHECK(open_fd_count() == fds_before);
    CHECK(my_children().empty());
    CHECK(dev_shm_listing() == shm_before);
}
