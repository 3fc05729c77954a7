// Test helper: large messages whose every element depends on their seed, so a torn or
// half-delivered copy is detected. Shared by the queue and pipe tests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

inline std::vector<std::uint64_t> big_message(std::uint64_t seed, std::size_t elements) {
    std::vector<std::uint64_t> values(elements);
    for (std::size_t i = 0; i < elements; ++i) values[i] = seed * 1'000'003u + i;
    return values;
}

inline bool is_intact(const std::vector<std::uint64_t>& values, std::size_t elements) {
    if (values.size() != elements || values.empty()) return false;
    const std::uint64_t seed = values[0] / 1'000'003u;
    for (std::size_t i = 0; i < elements; ++i)
        if (values[i] != seed * 1'000'003u + i) return false;
    return true;
}
