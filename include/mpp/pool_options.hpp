// PoolOptions: how a Pool is built (worker count, initializer, recycling,
// timeouts, retries, ring and staging sizes). Every field's zero value means
// "the default".
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>

namespace mpp {

struct PoolOptions {
    std::size_t processes = 0;               // 0 = cpu_count()
    std::function<void()> initializer = {};  // runs once in each worker before its first task
    std::size_t maxtasksperchild = 0;        // 0 = unlimited; else the worker is replaced after N tasks
    std::chrono::milliseconds task_timeout{0};  // 0 = none; else a task running longer fails with TaskTimeout
    unsigned retries = 0;                    // times a task lost to a worker crash is re-run before it fails
    std::size_t ring_bytes = 0;              // 0 = library default (256 KiB); per-direction ring capacity per worker
    // Shared memory that messages of 256 KiB or more are encoded into and read from in place
    // (larger ones stream through the rings). Virtual: pages are backed once first used.
    std::size_t task_staging_bytes = 0;      // 0 = library default (256 MiB); for arguments, all callers together
    std::size_t result_staging_bytes = 0;    // 0 = library default (128 MiB); for results, per worker
};

}  // namespace mpp
