// mpp::cereal_serializer: round trips through dumps/loads, cereal's byte format, bad input as
// SerializationError, and a pool that ships a cereal-only type. Compiled only where cereal exists.
#include <catch2/catch.hpp>

#if __has_include(<cereal/cereal.hpp>)

#include <mpp/serializers/cereal.hpp>

#if __has_include(<mpp/pool.hpp>)
#include <mpp/pool.hpp>
#define MPP_CEREAL_TEST_HAS_POOL 1
#endif

#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

namespace {

// A type written the cereal way; cereal and nothing else says how to encode it.
struct measurement {
    std::string sensor;
    std::vector<double> samples;
    std::optional<std::string> note;
    std::map<std::string, int> tags;
    bool calibrated = false;

    template <class Archive>
    void serialize(Archive& archive) {
        archive(sensor, samples, note, tags, calibrated);
    }
    bool operator==(const measurement&) const = default;
};

// A type cereal knows only through save/load free functions.
struct celsius {
    double degrees = 0;
    bool operator==(const celsius&) const = default;
};
template <class Archive>
void save(Archive& archive, const celsius& value) {
    archive(value.degrees);
}
template <class Archive>
void load(Archive& archive, celsius& value) {
    archive(value.degrees);
}

// A type with an mpp::codec specialization and no cereal function at all.
struct ticket {
    std::uint16_t number = 0;
    bool operator==(const ticket&) const = default;
};

measurement sample_measurement() {
    return {"probe-7", {1.5, -2.25, 1e300}, std::string("windy"), {{"site", 3}, {"floor", -1}}, true};
}

template <class T>
T round_trip(const T& value) {
    auto bytes = mpp::dumps<mpp::cereal_serializer>(value);
    return mpp::loads<T, mpp::cereal_serializer>(bytes);
}

}  // namespace

template <>
struct mpp::codec<ticket> {
    static void save(mpp::writer& out, const ticket& value) { out.write(&value.number, sizeof value.number); }
    static ticket load(mpp::reader& in) {
        ticket value;
        std::memcpy(&value.number, in.read(sizeof value.number).data(), sizeof value.number);
        return value;
    }
};

static_assert(mpp::serializer_type<mpp::cereal_serializer>);
static_assert(mpp::cereal_serializable<measurement>);
struct no_cereal_function {
    int x;
};
static_assert(!mpp::cereal_serializable<no_cereal_function>);

TEST_CASE("cereal_serializer round-trips a struct with a cereal serialize member", "[cereal]") {
    CHECK(round_trip(sample_measurement()) == sample_measurement());
    CHECK(round_trip(measurement{}) == measurement{});
}

TEST_CASE("cereal_serializer round-trips std types and save/load free functions", "[cereal]") {
    CHECK(round_trip(42) == 42);
    CHECK(round_trip(std::string("hello")) == "hello");
    CHECK(round_trip(std::vector<int>{1, 2, 3}) == std::vector<int>{1, 2, 3});
    CHECK(round_trip(std::tuple<int, std::string, double>{1, "two", 3.0}) ==
          std::tuple<int, std::string, double>{1, "two", 3.0});
    CHECK(round_trip(std::variant<int, std::string>(std::string("v"))) == std::variant<int, std::string>("v"));
    CHECK(round_trip(celsius{21.5}) == celsius{21.5});
    CHECK(round_trip(std::vector<bool>{true, false, true}) == std::vector<bool>{true, false, true});
    auto owned = round_trip(std::make_unique<std::string>("boxed"));
    REQUIRE(owned != nullptr);
    CHECK(*owned == "boxed");
}

TEST_CASE("cereal_serializer writes cereal's binary format: raw values and 64-bit sizes", "[cereal]") {
    CHECK(mpp::dumps<mpp::cereal_serializer>(std::uint32_t{7}).size() == 4);
    CHECK(mpp::dumps<mpp::cereal_serializer>(std::string("ab")).size() == 8 + 2);
    CHECK(mpp::dumps<mpp::cereal_serializer>(std::vector<double>(3)).size() == 8 + 3 * 8);
}

TEST_CASE("cereal_serializer keeps the mpp::codec encoding for types nested in cereal containers", "[cereal]") {
    std::vector<ticket> tickets{{1}, {65535}};
    auto bytes = mpp::dumps<mpp::cereal_serializer>(tickets);
    CHECK(bytes.size() == 8 + 2 * 2);
    CHECK(mpp::loads<std::vector<ticket>, mpp::cereal_serializer>(bytes) == tickets);
}

TEST_CASE("cereal_serializer turns truncated, trailing and corrupt bytes into SerializationError", "[cereal]") {
    auto bytes = mpp::dumps<mpp::cereal_serializer>(sample_measurement());
    SECTION("every truncation") {
        for (std::size_t length = 0; length < bytes.size(); ++length) {
            INFO("truncated to " << length << " of " << bytes.size() << " bytes");
            CHECK_THROWS_AS((mpp::loads<measurement, mpp::cereal_serializer>(std::span(bytes).first(length))),
                            mpp::SerializationError);
        }
    }
    SECTION("a trailing byte") {
        bytes.push_back(std::byte{0});
        CHECK_THROWS_AS((mpp::loads<measurement, mpp::cereal_serializer>(bytes)), mpp::SerializationError);
    }
    SECTION("a size of 2^60 is refused before anything is allocated") {
        auto huge = mpp::dumps<mpp::cereal_serializer>(std::uint64_t{1} << 60);
        CHECK_THROWS_WITH((mpp::loads<std::vector<double>, mpp::cereal_serializer>(huge)),
                          Catch::Contains("claims 1152921504606846976 elements"));
        CHECK_THROWS_AS((mpp::loads<std::string, mpp::cereal_serializer>(huge)), mpp::SerializationError);
    }
    SECTION("a variant index out of range") {
        auto wrong = mpp::dumps<mpp::cereal_serializer>(std::uint32_t{9});
        CHECK_THROWS_AS((mpp::loads<std::variant<int, float>, mpp::cereal_serializer>(wrong)), mpp::SerializationError);
    }
    SECTION("a bool byte that is neither 0 nor 1") {
        std::vector<std::byte> two{std::byte{2}};
        CHECK_THROWS_AS((mpp::loads<bool, mpp::cereal_serializer>(two)), mpp::SerializationError);
    }
}

TEST_CASE("cereal_serializer decodes thousands of random mutations without crashing", "[cereal]") {
    const auto original = mpp::dumps<mpp::cereal_serializer>(sample_measurement());
    std::mt19937 random(12345);
    int refused = 0;
    int decoded = 0;
    for (int round = 0; round < 3000; ++round) {
        auto bytes = original;
        int flips = 1 + static_cast<int>(random() % 4);
        for (int i = 0; i < flips; ++i) bytes[random() % bytes.size()] = static_cast<std::byte>(random());
        try {
            (void)mpp::loads<measurement, mpp::cereal_serializer>(bytes);
            ++decoded;
        } catch (const mpp::SerializationError&) {
            ++refused;
        }
    }
    CHECK(refused + decoded == 3000);
    CHECK(refused > 0);  // a mutated length or bool byte must be caught, not decoded
}

#ifdef MPP_CEREAL_TEST_HAS_POOL
namespace {
measurement scaled(measurement m) {
    for (double& sample : m.samples) sample *= 2;
    m.tags["worker"] = 1;
    return m;
}
}  // namespace

TEST_CASE("a basic_pool<cereal_serializer> maps over a cereal-serializable struct", "[cereal][pool]") {
    std::vector<measurement> inputs;
    for (int i = 0; i < 20; ++i) {
        auto m = sample_measurement();
        m.sensor += '-';
        m.sensor += std::to_string(i);
        m.samples.push_back(i);
        inputs.push_back(m);
    }
    mpp::basic_pool<mpp::cereal_serializer> pool(2);
    auto outputs = pool.map(scaled, inputs);
    REQUIRE(outputs.size() == inputs.size());
    for (std::size_t i = 0; i < inputs.size(); ++i) CHECK(outputs[i] == scaled(inputs[i]));
}
#endif

#else

TEST_CASE("cereal is not installed, so mpp::cereal_serializer is not tested", "[cereal]") {
    SUCCEED("install libcereal-dev to build and test mpp/serializers/cereal.hpp");
}

#endif
