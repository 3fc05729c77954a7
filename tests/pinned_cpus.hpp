// Test helper: restricts the calling thread (and whatever it forks or starts
// meanwhile) to a set of CPUs, and gives its old set back at the end of the scope.
#pragma once

#include <sched.h>

#include <catch2/catch.hpp>

inline cpu_set_t allowed_cpus() {
    cpu_set_t mask;
    CPU_ZERO(&mask);
    REQUIRE(::sched_getaffinity(0, sizeof mask, &mask) == 0);
    return mask;
}

/// Only `cpu`.
inline cpu_set_t only_cpu(int cpu) {
    cpu_set_t mask;
    CPU_ZERO(&mask);
    CPU_SET(cpu, &mask);
    return mask;
}

class pinned {
public:
    explicit pinned(const cpu_set_t& mask) : before_(allowed_cpus()) {
        REQUIRE(::sched_setaffinity(0, sizeof mask, &mask) == 0);
    }
    ~pinned() { ::sched_setaffinity(0, sizeof before_, &before_); }
    pinned(const pinned&) = delete;
    pinned& operator=(const pinned&) = delete;

private:
    cpu_set_t before_;
};
