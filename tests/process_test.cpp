// Tests for mpp/process.hpp: Process lifecycle, exit codes, signals, daemon destruction,
// names, active_children, cpu_count, and that no child is left unreaped.
#include <mpp/process.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "sanitizers.hpp"

namespace {

using namespace std::chrono_literals;

/// A small block of shared memory for a child to report into (freed at scope exit).
template <class T>
struct shared_cell {
    shared_cell() : value(mpp::detail::shared_segment::instance().create<T>()) {}
    ~shared_cell() { mpp::detail::shared_segment::instance().destroy(value); }
    shared_cell(const shared_cell&) = delete;
    shared_cell& operator=(const shared_cell&) = delete;
    T* value;
};

/// A fixed-size text slot a child can fill in shared memory.
struct shared_text {
    char bytes[128] = {};
    void set(const std::string& text) { std::strncpy(bytes, text.c_str(), sizeof bytes - 1); }
    std::string get() const { return std::string(bytes); }
};

bool no_child_left_to_reap() {
    errno = 0;
    const pid_t reaped = ::waitpid(-1, nullptr, WNOHANG);
    return reaped == -1 && errno == ECHILD;
}

bool pid_is_gone(pid_t pid) { return ::kill(pid, 0) == -1 && errno == ESRCH; }

}  // namespace

TEST_CASE("a process runs its target with copied arguments in a forked child", "[process]") {
    shared_cell<std::atomic<int>> sum;
    shared_cell<std::atomic<int>> child_pid;
    mpp::Process p(
        [](std::atomic<int>* out, std::atomic<int>* pid_out, int a, std::string b) {
            out->store(a + static_cast<int>(b.size()));
            pid_out->store(::getpid());
        },
        sum.value, child_pid.value, 40, std::string("ab"));
    CHECK(p.pid() == 0);
    CHECK_FALSE(p.exitcode().has_value());
    p.start();
    CHECK(p.pid() > 0);
    CHECK(p.pid() != ::getpid());
    p.join();
    CHECK(sum.value->load() == 42);
    CHECK(child_pid.value->load() == p.pid());
    REQUIRE(p.exitcode() == 0);
    CHECK_FALSE(p.is_alive());
}

TEST_CASE("a capturing lambda sees the parent's state as of start()", "[process]") {
    shared_cell<std::atomic<int>> seen;
    std::vector<int> local{1, 2, 3, 4};
    int multiplier = 10;
    mpp::Process p([&] {
        int total = 0;
        for (int x : local) total += x * multiplier;
        seen.value->store(total);
    });
    p.start();
    p.join();
    CHECK(seen.value->load() == 100);
}

TEST_CASE("the child leaves through _exit and never runs the caller's code after start()", "[process]") {
    shared_cell<std::atomic<int>> lines_after_start;
    mpp::Process p([] {});
    p.start();
    lines_after_start.value->fetch_add(1);  // a child returning from start() would run this too
    p.join();
    CHECK(lines_after_start.value->load() == 1);
    CHECK(p.exitcode() == 0);
}

TEST_CASE("exit codes follow Python: 0, 1 for an escaped exception, _exit's code, -N for signal N", "[process]") {
    mpp::Process normal([] {});
    mpp::Process throwing([] { throw std::runtime_error("expected failure printed by a test child"); });
    mpp::Process throwing_other([] { throw 7; });
    mpp::Process exiting([] { ::_exit(3); });
    mpp::Process killed_itself([] { ::raise(SIGKILL); });
    for (auto* p : {&normal, &throwing, &throwing_other, &exiting, &killed_itself}) p->start();
    for (auto* p : {&normal, &throwing, &throwing_other, &exiting, &killed_itself}) p->join();
    CHECK(normal.exitcode() == 0);
    CHECK(throwing.exitcode() == 1);
    CHECK(throwing_other.exitcode() == 1);
    CHECK(exiting.exitcode() == 3);
    CHECK(killed_itself.exitcode() == -SIGKILL);
}

TEST_CASE("terminate and kill stop a sleeping child with -SIGTERM and -SIGKILL", "[process]") {
    mpp::Process sleeper_a([] { ::pause(); });
    mpp::Process sleeper_b([] {
        ::signal(SIGTERM, SIG_IGN);  // only SIGKILL can stop this one
        ::pause();
    });
    sleeper_a.start();
    sleeper_b.start();
    CHECK(sleeper_a.is_alive());
    sleeper_a.terminate();
    sleeper_a.join();
    CHECK(sleeper_a.exitcode() == -SIGTERM);
    CHECK_FALSE(sleeper_a.is_alive());
    sleeper_b.kill();
    REQUIRE(sleeper_b.join(60s));
    CHECK(sleeper_b.exitcode() == -SIGKILL);
    // After the child is reaped these are harmless no-ops, as in Python.
    sleeper_a.terminate();
    sleeper_b.kill();
}

TEST_CASE("join with a timeout on a sleeping child returns false without waiting for it", "[process]") {
    mpp::Process sleeper([] { ::pause(); });
    sleeper.start();
    const auto began = std::chrono::steady_clock::now();
    CHECK_FALSE(sleeper.join(50ms));
    CHECK_FALSE(sleeper.join(0s));
    CHECK(std::chrono::steady_clock::now() - began < 30s);  // hang guard only
    CHECK(sleeper.is_alive());
    CHECK_FALSE(sleeper.exitcode().has_value());
    sleeper.kill();
    CHECK(sleeper.join(60s));
    CHECK(sleeper.exitcode() == -SIGKILL);
}

TEST_CASE("join with a timeout returns true once the child has exited", "[process]") {
    mpp::Process quick([] { std::this_thread::sleep_for(20ms); });
    quick.start();
    REQUIRE(quick.join(60s));
    CHECK(quick.exitcode() == 0);
}

TEST_CASE("destroying a daemon Process terminates and reaps its child", "[process]") {
    pid_t pid = 0;
    {
        mpp::Process daemon([] { ::pause(); });
        daemon.daemon(true);
        CHECK(daemon.daemon());
        daemon.start();
        pid = daemon.pid();
        REQUIRE(daemon.is_alive());
    }
    CHECK(pid_is_gone(pid));  // not even a zombie: it was reaped
}

TEST_CASE("destroying a daemon Process whose child ignores SIGTERM still kills and reaps it", "[process]") {
    pid_t pid = 0;
    {
        mpp::Process stubborn([] {
            ::signal(SIGTERM, SIG_IGN);
            ::pause();
        });
        stubborn.daemon(true);
        stubborn.start();
        pid = stubborn.pid();
    }
    CHECK(pid_is_gone(pid));
}

TEST_CASE("destroying a started non-daemon Process joins its child", "[process]") {
    shared_cell<std::atomic<int>> finished;
    pid_t pid = 0;
    {
        mpp::Process worker([&] {
            std::this_thread::sleep_for(100ms);
            finished.value->store(1);
        });
        worker.start();
        pid = worker.pid();
    }
    CHECK(finished.value->load() == 1);
    CHECK(pid_is_gone(pid));
}

TEST_CASE("a moved Process keeps its child and the moved-from one owns nothing", "[process]") {
    mpp::Process original([] { ::_exit(5); });
    original.start();
    mpp::Process moved(std::move(original));
    moved.join();
    CHECK(moved.exitcode() == 5);
    std::vector<mpp::Process> many;
    for (int i = 0; i < 3; ++i) many.emplace_back([i] { ::_exit(10 + i); });
    for (auto& p : many) p.start();
    for (auto& p : many) p.join();
    for (int i = 0; i < 3; ++i) CHECK(many[static_cast<std::size_t>(i)].exitcode() == 10 + i);
}

TEST_CASE("misuse of a Process throws std::logic_error", "[process]") {
    mpp::Process p([] {});
    CHECK_THROWS_AS(p.join(), std::logic_error);
    CHECK_THROWS_AS(p.join(1s), std::logic_error);
    CHECK_THROWS_AS(p.terminate(), std::logic_error);
    p.start();
    CHECK_THROWS_AS(p.start(), std::logic_error);
    CHECK_THROWS_AS(p.daemon(true), std::logic_error);
    p.join();
    p.join();  // joining twice is fine, as in Python
    CHECK(p.exitcode() == 0);
}

TEST_CASE("processes are named Process-N by default and the name can be changed", "[process]") {
    mpp::Process first([] {});
    mpp::Process second([] {});
    const auto number = [](const std::string& name) { return std::stoi(name.substr(std::string("Process-").size())); };
    REQUIRE(first.name().rfind("Process-", 0) == 0);
    REQUIRE(second.name().rfind("Process-", 0) == 0);
    CHECK(number(second.name()) == number(first.name()) + 1);
    second.name("worker");
    CHECK(second.name() == "worker");
    CHECK(mpp::current_process().name == "MainProcess");
    CHECK(mpp::current_process().pid == ::getpid());
}

TEST_CASE("in the child, current_process gives the child's name and pid and active_children is empty", "[process]") {
    shared_cell<shared_text> child_name;
    shared_cell<shared_text> grandchild_name;
    shared_cell<std::atomic<int>> child_pid;
    shared_cell<std::atomic<int>> inherited_children;
    mpp::Process sibling([] { ::pause(); });
    sibling.daemon(true);
    sibling.start();
    mpp::Process child([&] {
        child_name.value->set(mpp::current_process().name);
        child_pid.value->store(mpp::current_process().pid);
        inherited_children.value->store(static_cast<int>(mpp::active_children().size()));
        mpp::Process grandchild([&] { grandchild_name.value->set(mpp::current_process().name); });
        grandchild.start();
        grandchild.join();
    });
    child.name("the-child");
    child.start();
    child.join();
    CHECK(child.exitcode() == 0);
    CHECK(child_name.value->get() == "the-child");
    CHECK(child_pid.value->load() == child.pid());
    CHECK(inherited_children.value->load() == 0);
    // Python numbers a child's children from 1 under the child's identity.
    CHECK(grandchild_name.value->get().rfind("Process-", 0) == 0);
    CHECK(grandchild_name.value->get().find(":1") != std::string::npos);
    CHECK(mpp::current_process().name == "MainProcess");
}

TEST_CASE("active_children lists live children and reaps finished ones", "[process]") {
    mpp::Process sleeper([] { ::pause(); });
    mpp::Process quick([] {});
    CHECK(mpp::active_children().empty());
    sleeper.start();
    quick.start();
    // quick finishes on its own; wait for it without joining, the way Python code polls.
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    std::vector<pid_t> live;
    do {
        live = mpp::active_children();
        if (live.size() == 1) break;
        std::this_thread::sleep_for(5ms);
    } while (std::chrono::steady_clock::now() < deadline);
    REQUIRE(live.size() == 1);
    CHECK(live[0] == sleeper.pid());
    CHECK(quick.exitcode() == 0);  // reaped by active_children, status kept for the Process
    sleeper.kill();
    sleeper.join();
    CHECK(mpp::active_children().empty());
}

TEST_CASE("cpu_count is at least 1 and within the affinity mask", "[process]") {
    const std::size_t count = mpp::cpu_count();
    CHECK(count >= 1);
    cpu_set_t set;
    CPU_ZERO(&set);
    REQUIRE(::sched_getaffinity(0, sizeof set, &set) == 0);
    CHECK(count <= static_cast<std::size_t>(CPU_COUNT(&set)));
}

namespace {
/// A throwaway directory tree standing in for /proc and /sys/fs/cgroup; removed at scope exit.
struct fake_root {
    fake_root() {
        std::string pattern = (std::filesystem::temp_directory_path() / "mpp-cgroup-XXXXXX").string();
        REQUIRE(::mkdtemp(pattern.data()) != nullptr);
        path = pattern;
    }
    ~fake_root() { std::filesystem::remove_all(path); }
    void write(const std::string& relative, const std::string& text) const {
        const auto file = path / relative.substr(1);
        std::filesystem::create_directories(file.parent_path());
        std::ofstream(file) << text;
    }
    std::filesystem::path path;
};
}  // namespace

TEST_CASE("cpu_count's cgroup quota reading rounds up and takes the tightest limit on the path", "[process]") {
    fake_root root;
    SECTION("no cgroup files: no limit") { CHECK_FALSE(mpp::detail::cgroup_cpu_limit(root.path.string()).has_value()); }
    SECTION("cgroup v2: a parent's 1.5 CPUs limit a child with no quota of its own") {
        root.write("/proc/self/cgroup", "0::/job/step\n");
        root.write("/sys/fs/cgroup/job/step/cpu.max", "max 100000\n");
        root.write("/sys/fs/cgroup/job/cpu.max", "150000 100000\n");
        CHECK(mpp::detail::cgroup_cpu_limit(root.path.string()) == std::size_t{2});
    }
    SECTION("cgroup v2: the tighter of two nested quotas wins") {
        root.write("/proc/self/cgroup", "0::/job/step\n");
        root.write("/sys/fs/cgroup/job/step/cpu.max", "300000 100000\n");
        root.write("/sys/fs/cgroup/job/cpu.max", "50000 100000\n");
        CHECK(mpp::detail::cgroup_cpu_limit(root.path.string()) == std::size_t{1});
    }
    SECTION("cgroup v1: cfs_quota_us over cfs_period_us, unlimited when -1") {
        root.write("/proc/self/cgroup", "4:memory:/x\n3:cpu,cpuacct:/box\n0::/\n");
        root.write("/sys/fs/cgroup/cpu,cpuacct/box/cpu.cfs_quota_us", "300000\n");
        root.write("/sys/fs/cgroup/cpu,cpuacct/box/cpu.cfs_period_us", "100000\n");
        CHECK(mpp::detail::cgroup_cpu_limit(root.path.string()) == std::size_t{3});
        root.write("/sys/fs/cgroup/cpu,cpuacct/box/cpu.cfs_quota_us", "-1\n");
        CHECK_FALSE(mpp::detail::cgroup_cpu_limit(root.path.string()).has_value());
    }
}

TEST_CASE("buffered output is flushed before the fork and at the child's exit, never printed twice", "[process]") {
    fake_root scratch;  // just a private temporary directory
    const std::string file = (scratch.path / "stdout.txt").string();
    // Runs in its own child, so redirecting stdout cannot disturb the test runner.
    mpp::Process writer([&] {
        std::FILE* redirected = std::freopen(file.c_str(), "w", stdout);
        if (redirected == nullptr) ::_exit(10);
        std::setvbuf(stdout, nullptr, _IOFBF, 4096);  // fully buffered, as when piped
        std::printf("before-");                      // still in the buffer at start()
        mpp::Process child([] { std::printf("child-"); });  // leaves through _exit: must flush
        child.start();
        child.join();
        std::printf("after");
    });
    writer.start();
    writer.join();
    REQUIRE(writer.exitcode() == 0);
    std::ifstream in(file);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(text == "before-child-after");
}

TEST_CASE("every child is reaped: no zombie is left after all kinds of exits", "[process]") {
    {
        mpp::Process a([] {});
        mpp::Process b([] { throw std::runtime_error("expected failure printed by a test child"); });
        mpp::Process c([] { ::pause(); });
        mpp::Process d([] { ::pause(); });
        mpp::Process never_started([] {});
        d.daemon(true);
        a.start();
        b.start();
        c.start();
        d.start();
        a.join();
        c.kill();
        (void)mpp::active_children();
    }  // b is joined, c reaped, d terminated by the destructors
    CHECK(no_child_left_to_reap());
}

TEST_CASE("an mpp child never steals SIGCHLD: the parent's handler stays as it was", "[process]") {
    struct sigaction before {};
    REQUIRE(::sigaction(SIGCHLD, nullptr, &before) == 0);
    mpp::Process p([] {});
    p.start();
    p.join();
    struct sigaction after {};
    REQUIRE(::sigaction(SIGCHLD, nullptr, &after) == 0);
    CHECK(after.sa_handler == before.sa_handler);
    CHECK(p.exitcode() == 0);
}

#if defined(__GLIBC__) && !defined(MPP_TEST_SANITIZED)
namespace {
/// This process's resident anonymous memory in KiB ("RssAnon" of /proc/self/status).
long resident_anonymous_kib() {
    std::ifstream status("/proc/self/status");
    std::string key;
    long value = 0;
    while (status >> key) {
        if (key == "RssAnon:" && status >> value) return value;
        status.ignore(4096, '\n');
    }
    return -1;
}
}  // namespace

TEST_CASE("start() hands malloc's free heap pages back before the fork, and leaves memory in use alone",
          "[process]") {
    // 32 MiB of 64 KiB blocks (below malloc's mmap threshold, so they live in the heap), then a
    // guard block above them so that freeing them cannot shrink the heap by itself.
    constexpr std::size_t block_bytes = 64 * 1024, blocks = 512;
    std::vector<std::vector<char>> heap;
    heap.reserve(blocks);
    for (std::size_t i = 0; i < blocks; ++i) heap.emplace_back(block_bytes, static_cast<char>(i));
    std::vector<char> guard(block_bytes, 'g');
    std::vector<char> kept = std::move(heap[blocks / 2]);
    heap.clear();
    const long before = resident_anonymous_kib();
    REQUIRE(before > 0);

    mpp::Process child([&kept] {
        for (char c : kept) {
            if (c != static_cast<char>(blocks / 2)) ::_exit(3);
        }
        ::_exit(0);
    });
    child.start();
    const long after = resident_anonymous_kib();
    child.join();
    CHECK(child.exitcode() == 0);  // the block still in use reached the child intact
    INFO("resident anonymous memory: " << before << " KiB before start(), " << after << " KiB after");
    CHECK(before - after >= 16 * 1024);
    CHECK(guard[0] == 'g');
}
#endif
