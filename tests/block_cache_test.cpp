// detail::block_cache, where apply and apply_async jobs are allocated: freed blocks
// come back for the next object of their size, up to a limit, from any thread.
#include <catch2/catch.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "mpp/detail/block_cache.hpp"

namespace {

using mpp::detail::block_cache;
using mpp::detail::recycling_allocator;

TEST_CASE("block_cache hands a freed block to the next request of its size class", "[block_cache]") {
    block_cache cache;
    void* first = cache.allocate(520);
    cache.deallocate(first, 520);
    CHECK(cache.retained_bytes() == 576);  // 520 rounded up to the 64-byte class

    INFO("another size class gets fresh memory");
    void* other = cache.allocate(100);
    CHECK(other != first);
    INFO("the same class (513..576 bytes) gets the freed block back");
    void* again = cache.allocate(560);
    CHECK(again == first);
    CHECK(cache.retained_bytes() == 0);

    cache.deallocate(again, 560);
    cache.deallocate(other, 100);
    CHECK(cache.retained_bytes() == 576 + 128);
}

TEST_CASE("block_cache passes large blocks straight through and keeps at most its limit", "[block_cache]") {
    block_cache cache;
    void* large = cache.allocate(block_cache::largest_block + 1);
    cache.deallocate(large, block_cache::largest_block + 1);
    CHECK(cache.retained_bytes() == 0);

    const std::size_t fits = block_cache::retained_limit / block_cache::largest_block;
    std::vector<void*> blocks;
    for (std::size_t i = 0; i < fits + 100; ++i) blocks.push_back(cache.allocate(block_cache::largest_block));
    for (void* block : blocks) cache.deallocate(block, block_cache::largest_block);
    CHECK(cache.retained_bytes() == fits * block_cache::largest_block);
    // The rest went back to operator delete (AddressSanitizer reports a leak otherwise).
}

TEST_CASE("block_cache serves threads that allocate and free each other's blocks", "[block_cache]") {
    block_cache cache;
    constexpr int per_thread = 20'000;
    std::array<std::vector<void*>, 2> made;
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; ++t)
        threads.emplace_back([&, t] {
            for (int i = 0; i < per_thread; ++i) {
                const std::size_t bytes = 64 + 64 * static_cast<std::size_t>(i % 4);
                void* block = cache.allocate(bytes);
                *static_cast<std::uint64_t*>(block) = static_cast<std::uint64_t>(i);
                if (i % 2 == 0)
                    cache.deallocate(block, bytes);
                else
                    made[static_cast<std::size_t>(t)].push_back(block);
            }
        });
    for (auto& thread : threads) thread.join();
    threads.clear();
    // Each frees the other's blocks while allocating more.
    for (int t = 0; t < 2; ++t)
        threads.emplace_back([&, t] {
            auto& theirs = made[static_cast<std::size_t>(1 - t)];
            for (std::size_t i = 0; i < theirs.size(); ++i) {
                const std::size_t bytes = 64 + 64 * static_cast<std::size_t>((2 * i + 1) % 4);
                cache.deallocate(theirs[i], bytes);
                cache.deallocate(cache.allocate(bytes), bytes);
            }
        });
    for (auto& thread : threads) thread.join();
    CHECK(cache.retained_bytes() > 0);
    CHECK(cache.retained_bytes() <= block_cache::retained_limit);
}

TEST_CASE("An object made with recycling_allocator keeps its cache alive and returns its memory to it",
          "[block_cache]") {
    struct payload {
        std::array<std::uint64_t, 40> words{};
    };
    auto cache = std::make_shared<block_cache>();
    std::weak_ptr<block_cache> watch = cache;
    auto object = std::allocate_shared<payload>(recycling_allocator<payload>(cache));
    object->words[39] = 7;
    const void* where = object.get();

    INFO("the first object's memory is reused by the next one of the same type");
    object.reset();
    CHECK(cache->retained_bytes() > 0);
    object = std::allocate_shared<payload>(recycling_allocator<payload>(cache));
    CHECK(static_cast<const void*>(object.get()) == where);
    CHECK(cache->retained_bytes() == 0);

    INFO("the pool (the cache's owner) may go first: the object still frees into a live cache");
    cache.reset();
    CHECK_FALSE(watch.expired());
    CHECK(object->words[39] == 0);
    object.reset();
    CHECK(watch.expired());
}

TEST_CASE("recycling_allocator gives an over-aligned object its alignment", "[block_cache]") {
    struct alignas(64) aligned_payload {
        std::array<std::uint64_t, 8> words{};
    };
    auto cache = std::make_shared<block_cache>();
    for (int i = 0; i < 4; ++i) {
        auto object = std::allocate_shared<aligned_payload>(recycling_allocator<aligned_payload>(cache));
        CHECK(reinterpret_cast<std::uintptr_t>(object.get()) % 64 == 0);
    }
    CHECK(cache->retained_bytes() == 0);  // it went around the cache
}

}  // namespace
