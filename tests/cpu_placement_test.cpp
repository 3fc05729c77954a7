#include <mpp/detail/cpu_placement.hpp>

#include <sched.h>

#include <catch2/catch.hpp>

#include "pinned_cpus.hpp"

TEST_CASE("current_cpu names a CPU the thread may run on", "[cpu_placement]") {
    const cpu_set_t allowed = allowed_cpus();
    const int cpu = mpp::detail::current_cpu();
    REQUIRE(cpu >= 0);
    CHECK(CPU_ISSET(cpu, &allowed));
}

TEST_CASE("step_off_cpu moves the thread to another allowed CPU and keeps its allowed set", "[cpu_placement]") {
    const cpu_set_t allowed = allowed_cpus();
    if (CPU_COUNT(&allowed) < 2) {
        WARN("one CPU only: nowhere to step to");
        return;
    }
    // Two CPUs exactly: the one we run on and one other.
    const int here = mpp::detail::current_cpu();
    int other = -1;
    for (int cpu = 0; cpu < CPU_SETSIZE && other < 0; ++cpu)
        if (cpu != here && CPU_ISSET(cpu, &allowed)) other = cpu;
    cpu_set_t two = only_cpu(here);
    CPU_SET(other, &two);
    const pinned scope(two);

    const int from = mpp::detail::current_cpu();
    REQUIRE(mpp::detail::step_off_cpu(from));
    CHECK(mpp::detail::current_cpu() != from);
    const cpu_set_t after = allowed_cpus();
    CHECK(CPU_EQUAL(&after, &two));
}

TEST_CASE("step_off_cpu stays put when it may not move", "[cpu_placement]") {
    const int here = mpp::detail::current_cpu();
    const cpu_set_t one = only_cpu(here);
    const pinned scope(one);

    CHECK_FALSE(mpp::detail::step_off_cpu(here));  // its only CPU
    CHECK(mpp::detail::current_cpu() == here);
    CHECK_FALSE(mpp::detail::step_off_cpu(-1));          // unknown
    CHECK_FALSE(mpp::detail::step_off_cpu(CPU_SETSIZE));  // out of range
    const cpu_set_t after = allowed_cpus();
    CHECK(CPU_EQUAL(&after, &one));
}
