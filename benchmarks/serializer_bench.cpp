// How fast binary_serializer moves bytes: an 8 MiB std::vector<double> encoded and decoded, against
// a plain memcpy of the same bytes in the same run, and the per-message cost of a small
// tuple<int, double, std::string>. No arguments; runs in a few seconds.
#include <mpp/serializer.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <tuple>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

// Keeps the optimizer from deleting work whose result is otherwise unused.
template <class T>
void keep(const T& value) {
    asm volatile("" : : "r"(&value) : "memory");
}

// Best-of-N seconds for one call of `work` (the minimum is the least disturbed by other load).
template <class Work>
double best_seconds(int repetitions, Work&& work) {
    double best = 1e30;
    for (int i = 0; i < repetitions; ++i) {
        const auto start = clock_type::now();
        work();
        best = std::min(best, std::chrono::duration<double>(clock_type::now() - start).count());
    }
    return best;
}

// Mean nanoseconds per call over `count` calls.
template <class Work>
double nanoseconds_per_call(std::size_t count, Work&& work) {
    const auto start = clock_type::now();
    for (std::size_t i = 0; i < count; ++i) work();
    return std::chrono::duration<double, std::nano>(clock_type::now() - start).count() / static_cast<double>(count);
}

}  // namespace

int main() {
    constexpr std::size_t doubles = (8u << 20) / sizeof(double);
    constexpr double mebibytes = 8.0;
    constexpr int repetitions = 60;

    std::vector<double> payload(doubles);
    for (std::size_t i = 0; i < doubles; ++i) payload[i] = static_cast<double>(i) * 0.25;

    // Baselines: memcpy into a buffer that is already mapped, and into a fresh allocation (which
    // is what any decode that returns a new vector has to pay for).
    std::vector<double> target(doubles);
    const double memcpy_warm = best_seconds(repetitions, [&] {
        std::memcpy(target.data(), payload.data(), doubles * sizeof(double));
        keep(target);
    });
    const double memcpy_fresh = best_seconds(repetitions, [&] {
        auto fresh = std::make_unique_for_overwrite<double[]>(doubles);
        std::memcpy(fresh.get(), payload.data(), doubles * sizeof(double));
        keep(fresh);
    });

    mpp::writer out;
    const double encode_reused = best_seconds(repetitions, [&] {
        out.clear();
        mpp::binary_serializer::save(out, payload);
        keep(out);
    });
    const double encode_dumps = best_seconds(repetitions, [&] {
        auto bytes = mpp::dumps(payload);
        keep(bytes);
    });
    const auto encoded = mpp::dumps(payload);
    const double decode_loads = best_seconds(repetitions, [&] {
        auto back = mpp::loads<std::vector<double>>(encoded);
        keep(back);
    });
    // The same bytes one byte off alignment, as they may sit in a ring slot.
    std::vector<std::byte> shifted(encoded.size() + 1);
    std::memcpy(shifted.data() + 1, encoded.data(), encoded.size());
    const auto misaligned = std::span<const std::byte>(shifted).subspan(1);
    const double decode_misaligned = best_seconds(repetitions, [&] {
        auto back = mpp::loads<std::vector<double>>(misaligned);
        keep(back);
    });
    if (mpp::loads<std::vector<double>>(encoded) != payload || mpp::loads<std::vector<double>>(misaligned) != payload) {
        std::fprintf(stderr, "round trip mismatch\n");
        return 1;
    }

    auto rate = [&](double seconds) { return mebibytes / seconds; };
    std::printf("8 MiB std::vector<double>, best of %d runs (MiB/s; ratio = memcpy time / this time)\n", repetitions);
    std::printf("  %-44s %9.0f MiB/s\n", "memcpy into a mapped buffer", rate(memcpy_warm));
    std::printf("  %-44s %9.0f MiB/s\n", "memcpy into a fresh allocation", rate(memcpy_fresh));
    std::printf("  %-44s %9.0f MiB/s  ratio %.2f (vs mapped memcpy)\n", "encode into a reused writer",
                rate(encode_reused), memcpy_warm / encode_reused);
    std::printf("  %-44s %9.0f MiB/s  ratio %.2f (vs fresh memcpy)\n", "mpp::dumps (fresh buffer)",
                rate(encode_dumps), memcpy_fresh / encode_dumps);
    std::printf("  %-44s %9.0f MiB/s  ratio %.2f (vs fresh memcpy)\n", "mpp::loads (fresh vector)",
                rate(decode_loads), memcpy_fresh / decode_loads);
    std::printf("  %-44s %9.0f MiB/s  ratio %.2f (vs fresh memcpy)\n", "mpp::loads from misaligned bytes",
                rate(decode_misaligned), memcpy_fresh / decode_misaligned);

    // Small messages: what every task argument and result pays.
    const std::tuple<int, double, std::string> message{42, 3.5, "a short label"};
    constexpr std::size_t operations = 2'000'000;
    const double encode_ns = nanoseconds_per_call(operations, [&] {
        out.clear();
        mpp::binary_serializer::save(out, message);
        keep(out);
    });
    out.clear();
    mpp::binary_serializer::save(out, message);
    const auto small = std::vector<std::byte>(out.bytes().begin(), out.bytes().end());
    const double decode_ns = nanoseconds_per_call(operations, [&] {
        mpp::reader in(small);
        auto back = mpp::binary_serializer::load<std::tuple<int, double, std::string>>(in);
        keep(back);
    });
    const double dumps_loads_ns = nanoseconds_per_call(operations / 2, [&] {
        auto back = mpp::loads<std::tuple<int, double, std::string>>(mpp::dumps(message));
        keep(back);
    });
    std::printf("tuple<int, double, std::string> (%zu bytes encoded), mean of %zu ops\n", small.size(), operations);
    std::printf("  %-44s %9.1f ns/op\n", "encode into a reused writer", encode_ns);
    std::printf("  %-44s %9.1f ns/op\n", "decode from a reader", decode_ns);
    std::printf("  %-44s %9.1f ns/op\n", "loads(dumps(x)) with fresh buffers", dumps_loads_ns);
    return 0;
}
