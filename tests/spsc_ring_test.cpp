// The ring's sleep and wake protocol (detail::spsc_ring with detail::await), in one
// process: two threads stand in for the pool and a worker.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <span>
#include <thread>
#include <utility>

#include "mpp/detail/spsc_ring.hpp"

namespace {

using namespace std::chrono_literals;
using mpp::detail::eventcount;
using mpp::detail::spsc_ring;

/// A ring on the heap, as it would sit in the shared segment.
struct heap_ring {
    explicit heap_ring(std::size_t capacity)
        : storage(new(std::align_val_t{mpp::detail::cache_line}) std::byte[spsc_ring::footprint(capacity)]),
          ring(new(storage) spsc_ring(capacity, &readable, &writable)) {}
    ~heap_ring() {
        ring->~spsc_ring();
        ::operator delete[](storage, std::align_val_t{mpp::detail::cache_line});
    }
    heap_ring(const heap_ring&) = delete;
    heap_ring& operator=(const heap_ring&) = delete;

    eventcount readable;
    eventcount writable;
    std::byte* storage;
    spsc_ring* ring;
};

void write_byte(spsc_ring& ring, std::byte value) {
    REQUIRE(ring.try_write(std::span(&value, 1)) == 1);
}

}  // namespace

TEST_CASE("a late wake for bytes already read does not strand the reader's next sleep", "[ring]") {
    // The pool writes a chunk, the worker reads it straight away (while spinning), and
    // only then does the pool's wake check for that chunk run: it lands while the
    // worker, out of work again, asks to be woken. The next chunk's wake must still
    // reach the worker. (A fresh-clone CI run hung here for 300 s before the fix.)
    heap_ring fixture(4096);
    spsc_ring& ring = *fixture.ring;
    write_byte(ring, std::byte{1});
    std::byte first{};
    REQUIRE(ring.try_read(std::span(&first, 1)) == 1);

    std::atomic<bool> late_wake_done{false};
    std::thread pool([&] {
        while (!late_wake_done.load()) std::this_thread::yield();
        std::this_thread::sleep_for(50ms);  // the reader is asleep by now
        write_byte(ring, std::byte{2});
        ring.publish_written();
    });

    const auto started = std::chrono::steady_clock::now();
    const bool woken = mpp::detail::await(
        fixture.readable, [&] { return ring.readable() > 0; },
        [&] {
            ring.want_data();
            // The pool's wake check for the byte read above, at the worst moment.
            if (!late_wake_done.exchange(true)) ring.publish_written();
        },
        started + 20s, /*spins=*/0);
    const auto waited = std::chrono::steady_clock::now() - started;
    pool.join();

    CHECK(woken);
    CHECK(waited < 15s);  // woken by the second byte's wake, not by the deadline
}

TEST_CASE("a reader and a writer stream many small messages without losing a wake", "[ring]") {
    // Messages far outnumber the ring's room, both sides sleep often, and the writer
    // publishes in batches (as the pool does), so wake checks trail the bytes they cover.
    heap_ring fixture(4096);
    spsc_ring& ring = *fixture.ring;
    constexpr std::uint64_t count = 200'000;

    std::thread writer([&] {
        for (std::uint64_t i = 0; i < count;) {
            const std::uint64_t batch_end = std::min(count, i + 1 + i % 7);
            for (; i < batch_end; ++i) ring.write_all(std::as_bytes(std::span(&i, 1)));
            ring.publish_written();
        }
    });

    bool in_order = true;
    std::uint64_t received = 0;
    for (; received < count; ++received) {
        std::uint64_t got = 0;
        const int spins = received % 3 == 0 ? 0 : 64;
        if (!ring.read_all(std::as_writable_bytes(std::span(&got, 1)), std::chrono::steady_clock::now() + 60s, spins))
            break;  // a lost wake: nothing came for a minute
        in_order = in_order && got == received;
    }
    CHECK(received == count);
    if (received != count) std::quick_exit(1);  // the writer is stuck on a full ring: do not join it
    writer.join();
    CHECK(in_order);
}
