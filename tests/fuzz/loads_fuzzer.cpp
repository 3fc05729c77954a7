// libFuzzer target for mpp::loads: whatever the bytes, decoding either yields a
// value or throws mpp::SerializationError (no crash, over-read, huge allocation
// or hang), and a decoded value re-encodes to bytes that decode to the same bytes.
// Built only with clang (tests/fuzz/CMakeLists.txt); run: loads_fuzzer -max_total_time=60
#include <mpp/serializer.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

namespace {

// Ordered containers only: an unordered one may re-encode in another order.
using record = std::tuple<std::vector<std::string>, std::map<int, std::optional<double>>,
                          std::variant<std::monostate, std::int64_t, std::string, std::vector<bool>>,
                          std::set<std::pair<std::uint8_t, std::string>>, std::deque<std::list<char>>,
                          std::array<std::uint16_t, 3>, bool, std::vector<std::vector<std::int32_t>>>;

/// Decodes `bytes` as T; if that works, dumps(value) must decode and re-encode to itself.
template <class T>
void check_type(std::span<const std::byte> bytes) {
    std::optional<T> value;
    try {
        value.emplace(mpp::loads<T>(bytes));
    } catch (const mpp::SerializationError&) {
        return;  // rejected cleanly: fine
    }
    const std::vector<std::byte> once = mpp::dumps(*value);
    const std::vector<std::byte> twice = mpp::dumps(mpp::loads<T>(once));  // must not throw
    if (once != twice) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    // The first byte picks the type, so one corpus explores them all.
    const auto bytes = std::as_bytes(std::span(data + 1, size - 1));
    switch (data[0] % 6) {
        case 0: check_type<record>(bytes); break;
        case 1: check_type<std::string>(bytes); break;
        case 2: check_type<std::vector<std::optional<std::int64_t>>>(bytes); break;
        case 3: check_type<std::map<std::string, std::vector<double>>>(bytes); break;
        case 4: check_type<std::tuple<int, std::string, std::vector<bool>>>(bytes); break;
        default: check_type<std::variant<std::int8_t, std::u32string, std::pair<float, std::string>>>(bytes); break;
    }
    return 0;
}
