// Tests for mpp/serializer.hpp: every built-in type round-trips, both customization routes and a
// second Serializer plug in, unencodable types are refused at compile time, and hostile bytes
// (truncations, huge counts, bad tags, random mutations) only ever produce SerializationError.
#include <mpp/serializer.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <new>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <string_view>

// Every operator new in this test binary records its size, so tests can assert that decoding
// hostile bytes never asks for more memory than the input could justify. Under AddressSanitizer
// the replacement is left out (it owns new/delete there, and refuses absurd sizes itself).
#if defined(__SANITIZE_ADDRESS__)
#define MPP_TEST_COUNTS_ALLOCATIONS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MPP_TEST_COUNTS_ALLOCATIONS 0
#endif
#endif
#ifndef MPP_TEST_COUNTS_ALLOCATIONS
#define MPP_TEST_COUNTS_ALLOCATIONS 1
#endif

namespace {
std::size_t largest_allocation = 0;
}  // namespace

#if MPP_TEST_COUNTS_ALLOCATIONS
void* operator new(std::size_t size) {
    largest_allocation = std::max(largest_allocation, size);
    if (void* memory = std::malloc(size == 0 ? 1 : size)) return memory;
    throw std::bad_alloc();
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"  // it is matched: the new above is malloc
#endif
void operator delete(void* memory) noexcept { std::free(memory); }
void operator delete(void* memory, std::size_t) noexcept { std::free(memory); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

namespace {

template <class T>
T round_trip(const T& value) {
    return mpp::loads<T>(mpp::dumps(value));
}

std::vector<std::byte> as_bytes(std::initializer_list<unsigned> values) {
    std::vector<std::byte> bytes;
    for (unsigned v : values) bytes.push_back(static_cast<std::byte>(v));
    return bytes;
}

std::vector<std::byte> u64_le(std::uint64_t value) {
    std::vector<std::byte> bytes(8);
    for (int i = 0; i < 8; ++i) bytes[static_cast<std::size_t>(i)] = static_cast<std::byte>(value >> (8 * i));
    return bytes;
}

std::vector<std::byte> concat(std::vector<std::byte> a, const std::vector<std::byte>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

// ---- user types for the customization routes ----

enum class colour : std::uint8_t { red, green, blue };
enum plain_enum { plain_a = 1, plain_b = 70000 };
enum class flag : bool { off = false, on = true };

struct point {  // trivially copyable, no customization: copied as raw bytes
    double x;
    double y;
    bool operator==(const point&) const = default;
};

struct person {  // member serialize
    std::string name;
    int age = 0;
    std::vector<std::string> tags;
    template <class Ar>
    void serialize(Ar& ar) {
        ar(name, age, tags);
    }
    bool operator==(const person&) const = default;
};

struct matrix {  // C array members go through the archive element by element
    double cells[2][2] = {};
    std::string names[2];
    template <class Ar>
    void serialize(Ar& ar) {
        ar(cells, names);
    }
};

struct tree_node {  // a recursive type through unique_ptr and vector
    int value = 0;
    std::vector<tree_node> children;
    std::unique_ptr<tree_node> spare;
    template <class Ar>
    void serialize(Ar& ar) {
        ar(value, children, spare);
    }
};

struct chain {  // a linked list: the depth of decoding depends on the data
    int value = 0;
    std::unique_ptr<chain> next;
    template <class Ar>
    void serialize(Ar& ar) {
        ar(value, next);
    }
};

struct half_saved {  // serialize beats raw bytes: only `kept` is encoded
    std::int32_t kept = 0;
    std::int32_t dropped = 0;
    template <class Ar>
    void serialize(Ar& ar) {
        ar(kept);
    }
};

struct no_default {  // a serialize member, but loading could not construct one
    explicit no_default(int v) : value(v) {}
    int value;
    template <class Ar>
    void serialize(Ar& ar) {
        ar(value);
    }
};

struct empty_serialize {
    template <class Ar>
    void serialize(Ar& ar) {
        ar();
    }
};

}  // namespace

namespace geometry {  // free serialize found by ADL
struct segment {
    std::pair<int, int> from;
    std::pair<int, int> to;
    std::string label;
    bool operator==(const segment&) const = default;
};
template <class Ar>
void serialize(Ar& ar, segment& s) {
    ar(s.from, s.to, s.label);
}
}  // namespace geometry

// A handle-like type with an mpp::codec specialization: encoded as a 4-byte id plus a marker,
// and preferred over its serialize member.
struct resource_handle {
    std::uint32_t id = 0;
    template <class Ar>
    void serialize(Ar& ar) {
        ar(id, id);  // never used: codec<resource_handle> wins
    }
    bool operator==(const resource_handle&) const = default;
};

template <>
struct mpp::codec<resource_handle> {
    static constexpr std::uint8_t marker = 0xA5;
    static void save(mpp::writer& out, const resource_handle& handle) {
        out.write(&marker, 1);
        out.write(&handle.id, sizeof handle.id);
    }
    static resource_handle load(mpp::reader& in) {
        const auto tag = in.read(1);
        if (std::to_integer<std::uint8_t>(tag[0]) != marker) throw mpp::SerializationError("resource_handle: bad marker");
        resource_handle handle;
        std::memcpy(&handle.id, in.read(sizeof handle.id).data(), sizeof handle.id);
        return handle;
    }
};

namespace {

// A second, very different Serializer: human-readable text, "42;" for numbers and "5:hello" for
// strings. It knows nothing else, so shipping a resource_handle through it proves save_with
// falls back to mpp::codec.
struct text_serializer {
    template <class T>
    static void save(mpp::writer& out, const T& value) {
        if constexpr (std::is_same_v<T, std::string>) {
            const std::string length = std::to_string(value.size()) + ":";
            out.write(length.data(), length.size());
            out.write(value.data(), value.size());
        } else {
            static_assert(std::is_integral_v<T>, "text_serializer handles integers and strings");
            const std::string text = std::to_string(value) + ";";
            out.write(text.data(), text.size());
        }
    }
    template <class T>
    static T load(mpp::reader& in) {
        if constexpr (std::is_same_v<T, std::string>) {
            const std::size_t length = parse<std::size_t>(in, ':');
            const auto bytes = in.read(length);
            return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
        } else {
            return parse<T>(in, ';');
        }
    }

private:
    template <class N>
    static N parse(mpp::reader& in, char terminator) {
        std::string digits;
        for (;;) {
            const char c = static_cast<char>(in.read(1)[0]);
            if (c == terminator) break;
            digits.push_back(c);
        }
        N number{};
        const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), number);
        if (error != std::errc{} || end != digits.data() + digits.size()) {
            throw mpp::SerializationError("text_serializer: not a number: '" + digits + "'");
        }
        return number;
    }
};

std::string as_text(const std::vector<std::byte>& bytes) {
    return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

std::vector<std::byte> from_text(std::string_view text) {
    std::vector<std::byte> bytes(text.size());
    std::memcpy(bytes.data(), text.data(), text.size());
    return bytes;
}

void no_op() {}
int twice(int x) { return 2 * x; }

}  // namespace

// ---- compile-time contract ----

static_assert(mpp::serializer_type<mpp::binary_serializer>);
static_assert(mpp::serializer_type<text_serializer>);
static_assert(!mpp::serializer_type<int>);
static_assert(mpp::has_codec<resource_handle>);
static_assert(!mpp::has_codec<person>);
static_assert(!mpp::has_codec<int>);

static_assert(mpp::serializable<int>);
static_assert(mpp::serializable<person>);
static_assert(mpp::serializable<geometry::segment>);
static_assert(mpp::serializable<tree_node>);
static_assert(mpp::serializable<point>);
static_assert(mpp::serializable<std::map<std::string, std::vector<std::optional<point>>>>);
static_assert(mpp::serializable<void (*)()>);                 // the fork child shares the code
static_assert(mpp::serializable<int (*)(int)>);
static_assert(!mpp::serializable<std::string_view>);          // would dangle in another process
static_assert(!mpp::serializable<std::span<const int>>);
static_assert(!mpp::serializable<const char*>);
static_assert(!mpp::serializable<int*>);
static_assert(!mpp::serializable<int point::*>);              // member pointers
static_assert(!mpp::serializable<void (person::*)()>);
static_assert(!mpp::serializable<std::vector<std::string_view>>);
static_assert(!mpp::serializable<std::array<const char*, 2>>);  // trivially copyable, still refused
static_assert(!mpp::serializable<std::pair<int, int*>>);
static_assert(!mpp::serializable<std::optional<std::span<int>>>);
static_assert(!mpp::serializable<std::map<std::string_view, int>>);
static_assert(!mpp::serializable<std::unique_ptr<int[]>>);
static_assert(!mpp::serializable<std::shared_ptr<int>>);      // neither built in nor trivially copyable
static_assert(!mpp::serializable<int&>);
static_assert(!mpp::serializable<no_default>);  // trivially copyable, but its serialize member cannot load
static_assert(mpp::serializable<std::pair<const std::string, int>>);  // a map's value_type
static_assert(!mpp::serializable<int[4]>);                     // cannot be returned by load: use std::array

// ---- round trips ----

TEST_CASE("arithmetic types round-trip at their exact width", "[serializer]") {
    CHECK(round_trip(true) == true);
    CHECK(round_trip(false) == false);
    CHECK(round_trip('x') == 'x');
    CHECK(round_trip(std::int8_t{-7}) == -7);
    CHECK(round_trip(std::uint16_t{65535}) == 65535);
    CHECK(round_trip(std::numeric_limits<std::int32_t>::min()) == std::numeric_limits<std::int32_t>::min());
    CHECK(round_trip(std::numeric_limits<std::uint64_t>::max()) == std::numeric_limits<std::uint64_t>::max());
    CHECK(round_trip(3.25f) == 3.25f);
    CHECK(round_trip(-1e300) == -1e300);
    CHECK(round_trip(1.5L) == 1.5L);
    CHECK(mpp::dumps(std::int16_t{0x0102}) == as_bytes({0x02, 0x01}));  // little-endian
    CHECK(mpp::dumps(true) == as_bytes({1}));
    CHECK(mpp::dumps(1.0).size() == 8);
}

TEST_CASE("enums round-trip through their underlying type", "[serializer]") {
    CHECK(round_trip(colour::blue) == colour::blue);
    CHECK(round_trip(plain_b) == plain_b);
    CHECK(round_trip(flag::on) == flag::on);
    CHECK(mpp::dumps(colour::green) == as_bytes({1}));
    CHECK_THROWS_AS(mpp::loads<flag>(as_bytes({2})), mpp::SerializationError);  // bool underneath
}

TEST_CASE("strings round-trip including embedded NULs and empty ones", "[serializer]") {
    CHECK(round_trip(std::string()) == "");
    const std::string with_nul("a\0b", 3);
    CHECK(round_trip(with_nul) == with_nul);
    const std::string long_text(100000, 'q');
    CHECK(round_trip(long_text) == long_text);
    CHECK(round_trip(std::u16string(u"h\u00e9llo")) == u"h\u00e9llo");
    CHECK(mpp::dumps(std::string("hi")) == concat(u64_le(2), as_bytes({'h', 'i'})));
}

TEST_CASE("vectors round-trip: numbers in one block, bools as 0/1 bytes, nested ones element by element",
          "[serializer]") {
    const std::vector<double> numbers{1.5, -2.25, 1e-300};
    CHECK(round_trip(numbers) == numbers);
    CHECK(mpp::dumps(numbers).size() == 8 + 3 * sizeof(double));
    CHECK(round_trip(std::vector<int>{}).empty());

    const std::vector<bool> bits{true, false, true, true, false};
    CHECK(round_trip(bits) == bits);
    CHECK(mpp::dumps(bits) == concat(u64_le(5), as_bytes({1, 0, 1, 1, 0})));

    const std::vector<std::string> words{"alpha", "", "gamma"};
    CHECK(round_trip(words) == words);
    const std::vector<std::vector<int>> jagged{{1}, {}, {2, 3, 4}};
    CHECK(round_trip(jagged) == jagged);
    const std::vector<colour> colours{colour::red, colour::blue};
    CHECK(round_trip(colours) == colours);
    const std::vector<point> points{{1, 2}, {3, 4}};
    CHECK(round_trip(points) == points);
    const std::vector<std::array<double, 3>> xyz{{1, 2, 3}, {4, 5, 6}};
    CHECK(round_trip(xyz) == xyz);
    CHECK(mpp::dumps(xyz).size() == 8 + 2 * 3 * sizeof(double));
    const std::vector<std::complex<float>> samples{{1, 2}, {-1, 0.5f}};
    CHECK(round_trip(samples) == samples);
}

TEST_CASE("a big vector<double> is encoded and decoded into buffers of exactly the right size", "[serializer]") {
    std::vector<double> big(1 << 20);
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<double>(i) * 0.5;
    const auto bytes = mpp::dumps(big);
    CHECK(bytes.size() == 8 + big.size() * sizeof(double));
    CHECK(bytes.capacity() == bytes.size());  // reserved once, no geometric slack
    const auto back = mpp::loads<std::vector<double>>(bytes);
    CHECK(back == big);
    CHECK(back.capacity() == back.size());

    // A misaligned source (e.g. a ring slot) takes the other copy path and gives the same values.
    std::vector<std::byte> shifted(bytes.size() + 1);
    std::memcpy(shifted.data() + 1, bytes.data(), bytes.size());
    CHECK(mpp::loads<std::vector<double>>(std::span<const std::byte>(shifted).subspan(1)) == big);
}

TEST_CASE("std::array, pair and tuple round-trip without length prefixes", "[serializer]") {
    const std::array<int, 4> fixed{1, 2, 3, 4};
    CHECK(round_trip(fixed) == fixed);
    CHECK(mpp::dumps(fixed).size() == 16);
    const std::array<std::string, 2> names{"a", "bc"};
    CHECK(round_trip(names) == names);
    CHECK(round_trip(std::array<int, 0>{}).empty());

    const std::pair<int, std::string> entry{7, "seven"};
    CHECK(round_trip(entry) == entry);
    const std::vector<std::pair<const std::string, int>> entries{{"a", 1}, {"b", 2}};
    CHECK(round_trip(entries) == entries);
    const std::tuple<int, double, std::string> triple{1, 2.5, "three"};
    CHECK(round_trip(triple) == triple);
    const auto triple_bytes = mpp::dumps(triple);
    CHECK(triple_bytes.size() == 4 + 8 + 8 + 5);
    CHECK(triple_bytes.capacity() == triple_bytes.size());  // its size is known up front
    CHECK(round_trip(std::tuple<>{}) == std::tuple<>{});
}

TEST_CASE("optional, variant, monostate and unique_ptr round-trip in every state", "[serializer]") {
    CHECK(round_trip(std::optional<int>{}) == std::nullopt);
    CHECK(round_trip(std::optional<std::string>{"x"}) == std::optional<std::string>{"x"});

    using choice = std::variant<std::monostate, int, std::string, std::vector<double>>;
    CHECK(round_trip(choice{}) == choice{});
    CHECK(round_trip(choice{5}) == choice{5});
    CHECK(round_trip(choice{std::string("s")}) == choice{std::string("s")});
    CHECK(round_trip(choice{std::vector<double>{1, 2}}) == choice{std::vector<double>{1, 2}});
    using twins = std::variant<int, int>;  // the index, not the type, picks the alternative
    CHECK(round_trip(twins{std::in_place_index<1>, 3}).index() == 1);
    CHECK(round_trip(std::monostate{}) == std::monostate{});

    CHECK(round_trip(std::unique_ptr<int>{}) == nullptr);
    const auto boxed = round_trip(std::make_unique<std::string>("boxed"));
    REQUIRE(boxed != nullptr);
    CHECK(*boxed == "boxed");
}

TEST_CASE("maps, sets, deques and lists round-trip", "[serializer]") {
    const std::map<std::string, int> ages{{"ann", 31}, {"bob", 27}};
    CHECK(round_trip(ages) == ages);
    const std::unordered_map<int, std::vector<std::string>> groups{{1, {"a"}}, {2, {"b", "c"}}, {3, {}}};
    CHECK(round_trip(groups) == groups);
    const std::set<std::string> names{"x", "y", "z"};
    CHECK(round_trip(names) == names);
    const std::unordered_set<long> ids{5, 50, 500};
    CHECK(round_trip(ids) == ids);
    const std::deque<double> samples{0.5, 1.5};
    CHECK(round_trip(samples) == samples);
    const std::list<std::string> queue{"first", "second"};
    CHECK(round_trip(queue) == queue);
    CHECK(round_trip(std::map<int, int>{}).empty());

    const std::multimap<int, std::string> repeated{{1, "first"}, {1, "second"}, {0, "zero"}};
    CHECK(round_trip(repeated) == repeated);  // equal keys keep their order
    const std::multiset<char> letters{'a', 'a', 'b'};
    CHECK(round_trip(letters) == letters);
    const std::unordered_multimap<int, int> pairs{{1, 1}, {1, 2}};
    CHECK(round_trip(pairs).count(1) == 2);
    CHECK(round_trip(std::unordered_multiset<int>{4, 4, 4}).count(4) == 3);
}

TEST_CASE("byte buffers and other std::byte containers round-trip as one block", "[serializer]") {
    const std::vector<std::byte> payload = as_bytes({0, 255, 7});
    CHECK(round_trip(payload) == payload);
    CHECK(mpp::dumps(payload) == concat(u64_le(3), payload));
    const std::array<std::byte, 2> pair_of_bytes{std::byte{1}, std::byte{2}};
    CHECK(round_trip(pair_of_bytes) == pair_of_bytes);
}

TEST_CASE("durations, complex numbers, raw structs and function pointers round-trip", "[serializer]") {
    CHECK(round_trip(std::chrono::milliseconds(1234)) == std::chrono::milliseconds(1234));
    CHECK(round_trip(std::chrono::duration<double>(0.25)) == std::chrono::duration<double>(0.25));
    CHECK(round_trip(std::complex<double>(1, -2)) == std::complex<double>(1, -2));
    CHECK(round_trip(point{3, 4}) == point{3, 4});
    CHECK(mpp::dumps(point{3, 4}).size() == sizeof(point));

    CHECK(round_trip(&no_op) == &no_op);
    int offset = 5;  // not const: a constant would not need capturing
    const auto add_offset = [offset](int x) { return x + offset; };  // not default-constructible
    CHECK(round_trip(add_offset)(1) == 6);
    const auto no_capture = [](int x) { return x * 3; };
    CHECK(round_trip(no_capture)(2) == 6);
    int (*fn)(int) = &twice;
    CHECK(round_trip(fn)(21) == 42);
}

TEST_CASE("nested combinations of every family round-trip", "[serializer]") {
    using nested = std::map<std::string, std::vector<std::tuple<std::optional<int>, std::variant<double, std::string>,
                                                                  std::set<std::pair<int, colour>>>>>;
    nested value;
    value["one"].emplace_back(1, 2.5, std::set<std::pair<int, colour>>{{1, colour::red}});
    value["two"].emplace_back(std::nullopt, std::string("v"), std::set<std::pair<int, colour>>{});
    value["empty"];
    CHECK(round_trip(value) == value);

    std::vector<std::unordered_map<int, std::deque<std::list<std::array<std::complex<float>, 2>>>>> deep(2);
    deep[1][7].push_back({{{1, 2}, {3, 4}}});
    CHECK(round_trip(deep) == deep);
}

// ---- customization ----

TEST_CASE("a serialize member is used for user types and wins over raw bytes", "[serializer]") {
    const person ann{"ann", 31, {"admin", "ops"}};
    CHECK(round_trip(ann) == ann);
    CHECK(round_trip(std::vector<person>{ann, {}}) == std::vector<person>{ann, {}});

    const auto bytes = mpp::dumps(half_saved{5, 9});
    CHECK(bytes.size() == 4);  // a raw copy would be 8
    const auto back = mpp::loads<half_saved>(bytes);
    CHECK(back.kept == 5);
    CHECK(back.dropped == 0);
    CHECK(mpp::dumps(empty_serialize{}).empty());

    matrix m;
    m.cells[1][0] = 2.5;
    m.names[1] = "second";
    const auto back_m = round_trip(m);
    CHECK(back_m.cells[1][0] == 2.5);
    CHECK(back_m.names[1] == "second");
    CHECK(mpp::dumps(m).size() == 4 * 8 + 8 + (8 + 6));
}

TEST_CASE("a free serialize function is found by ADL", "[serializer]") {
    const geometry::segment s{{0, 0}, {3, 4}, "diagonal"};
    CHECK(round_trip(s) == s);
    CHECK(round_trip(std::optional<geometry::segment>{s}) == s);
}

TEST_CASE("recursive user types round-trip through vector and unique_ptr", "[serializer]") {
    tree_node root;
    root.value = 1;
    root.children.resize(2);
    root.children[1].value = 3;
    root.children[1].spare = std::make_unique<tree_node>();
    root.children[1].spare->value = 4;
    const auto back = round_trip(root);
    CHECK(back.value == 1);
    REQUIRE(back.children.size() == 2);
    REQUIRE(back.children[1].spare != nullptr);
    CHECK(back.children[1].spare->value == 4);
    CHECK(back.spare == nullptr);
}

TEST_CASE("a codec specialization wins over a serialize member, also inside containers", "[serializer]") {
    const resource_handle handle{0xDEADBEEF};
    const auto bytes = mpp::dumps(handle);
    CHECK(bytes == as_bytes({0xA5, 0xEF, 0xBE, 0xAD, 0xDE}));
    CHECK(round_trip(handle) == handle);
    const std::vector<resource_handle> many{{1}, {2}};
    CHECK(mpp::dumps(many).size() == 8 + 2 * 5);
    CHECK(round_trip(many) == many);
    CHECK_THROWS_AS(mpp::loads<resource_handle>(as_bytes({0x00, 1, 0, 0, 0})), mpp::SerializationError);
}

TEST_CASE("a second Serializer plugs into dumps, loads and save_with", "[serializer]") {
    CHECK(as_text(mpp::dumps<text_serializer>(42)) == "42;");
    CHECK(as_text(mpp::dumps<text_serializer>(std::string("hello"))) == "5:hello");
    CHECK(mpp::loads<int, text_serializer>(from_text("-17;")) == -17);
    CHECK(mpp::loads<std::string, text_serializer>(from_text("3:abc")) == "abc");
    CHECK_THROWS_AS((mpp::loads<int, text_serializer>(from_text("12;x"))), mpp::SerializationError);  // trailing
    CHECK_THROWS_AS((mpp::loads<int, text_serializer>(from_text("1x;"))), mpp::SerializationError);

    // The pool's path: a type with a codec goes through the codec even under text_serializer.
    mpp::writer out;
    mpp::save_with<text_serializer>(out, 7);
    mpp::save_with<text_serializer>(out, resource_handle{9});
    mpp::save_with<text_serializer>(out, std::string("end"));
    CHECK(out.size() == 2 + 5 + 5);
    mpp::reader in(out.bytes());
    CHECK(mpp::load_with<text_serializer, int>(in) == 7);
    CHECK(mpp::load_with<text_serializer, resource_handle>(in) == resource_handle{9});
    CHECK(mpp::load_with<text_serializer, std::string>(in) == "end");
    in.expect_end();
    CHECK(mpp::loads<resource_handle, text_serializer>(mpp::dumps<text_serializer>(resource_handle{3})).id == 3);
}

// ---- writer and reader ----

TEST_CASE("writer appends, extends in place, hands over its buffer and clears keeping capacity", "[serializer]") {
    mpp::writer out;
    out.reserve(64);
    out.write(std::span<const std::byte>(as_bytes({1, 2})));
    std::byte* slot = out.extend(2);
    slot[0] = std::byte{3};
    slot[1] = std::byte{4};
    out.write("\x05", 1);
    CHECK(out.size() == 5);
    CHECK(std::vector<std::byte>(out.bytes().begin(), out.bytes().end()) == as_bytes({1, 2, 3, 4, 5}));
    out.clear();
    CHECK(out.size() == 0);
    out.write("\x09", 1);
    const auto taken = std::move(out).take();
    CHECK(taken == as_bytes({9}));
    CHECK(taken.capacity() >= 64);  // clear() kept the reserved buffer
}

TEST_CASE("reader hands out bytes in order and says how many were wanted and left", "[serializer]") {
    const auto bytes = as_bytes({1, 2, 3});
    mpp::reader in(bytes);
    CHECK(in.read(2).size() == 2);
    CHECK(in.remaining() == 1);
    CHECK_THROWS_WITH(in.expect_end(), Catch::Contains("1 trailing byte"));
    CHECK_THROWS_WITH(in.read(5), Catch::Contains("wanted 5") && Catch::Contains("only 1"));
    CHECK(in.remaining() == 1);  // a failed read consumes nothing
    CHECK(std::to_integer<int>(in.read(1)[0]) == 3);
    CHECK_NOTHROW(in.expect_end());
    CHECK(in.read(0).empty());
}

// ---- bad input ----

TEST_CASE("a count too large for the bytes left is refused before anything is allocated", "[serializer]") {
    const auto huge = u64_le(std::uint64_t{1} << 60);
    const auto plus_some = concat(huge, as_bytes({1, 2, 3, 4, 5, 6, 7, 8}));
    largest_allocation = 0;
    CHECK_THROWS_WITH(mpp::loads<std::vector<int>>(plus_some), Catch::Contains("claims 1152921504606846976"));
    CHECK_THROWS_AS(mpp::loads<std::vector<double>>(plus_some), mpp::SerializationError);
    CHECK_THROWS_AS(mpp::loads<std::string>(plus_some), mpp::SerializationError);
    CHECK_THROWS_AS(mpp::loads<std::vector<std::string>>(plus_some), mpp::SerializationError);
    CHECK_THROWS_AS(mpp::loads<std::vector<std::vector<double>>>(plus_some), mpp::SerializationError);
    CHECK_THROWS_AS(mpp::loads<std::vector<bool>>(plus_some), mpp::SerializationError);
    CHECK_THROWS_AS((mpp::loads<std::map<int, int>>(plus_some)), mpp::SerializationError);
    CHECK_THROWS_AS((mpp::loads<std::unordered_map<int, std::string>>(plus_some)), mpp::SerializationError);
    CHECK_THROWS_AS(mpp::loads<std::unordered_set<char>>(plus_some), mpp::SerializationError);
    CHECK_THROWS_AS(mpp::loads<std::set<std::tuple<>>>(plus_some), mpp::SerializationError);
    CHECK_THROWS_AS(mpp::loads<std::deque<char>>(plus_some), mpp::SerializationError);
    CHECK_THROWS_AS(mpp::loads<std::list<person>>(plus_some), mpp::SerializationError);
    CHECK_THROWS_AS(mpp::loads<std::vector<std::monostate>>(plus_some), mpp::SerializationError);
    CHECK_THROWS_AS(mpp::loads<std::vector<std::uint64_t>>(u64_le(~std::uint64_t{0})), mpp::SerializationError);
    CHECK(largest_allocation < 1024);  // only the error messages were allocated

    // 2 doubles claimed, 15 bytes present: the count check uses the element size, not 1 byte.
    CHECK_THROWS_WITH(mpp::loads<std::vector<double>>(concat(u64_le(2), std::vector<std::byte>(15))),
                      Catch::Contains("at least 8 bytes each"));
}

TEST_CASE("a wrong variant index, a bad bool or flag, a repeated key and trailing bytes are errors",
          "[serializer]") {
    using choice = std::variant<int, std::string>;
    CHECK_THROWS_WITH(mpp::loads<choice>(as_bytes({2, 0, 0, 0, 1, 0, 0, 0})), Catch::Contains("variant index 2"));
    CHECK_THROWS_AS(mpp::loads<choice>(as_bytes({0xFF, 0xFF, 0xFF, 0xFF})), mpp::SerializationError);
    CHECK_THROWS_WITH(mpp::loads<bool>(as_bytes({2})), Catch::Contains("bool"));
    CHECK_THROWS_AS(mpp::loads<std::vector<bool>>(concat(u64_le(1), as_bytes({0x80}))), mpp::SerializationError);
    CHECK_THROWS_AS(mpp::loads<std::optional<int>>(as_bytes({7, 0, 0, 0, 0})), mpp::SerializationError);
    CHECK_THROWS_AS(mpp::loads<std::unique_ptr<char>>(as_bytes({3, 'x'})), mpp::SerializationError);

    auto repeated = concat(u64_le(2), as_bytes({5, 5}));
    CHECK_THROWS_WITH(mpp::loads<std::set<char>>(repeated), Catch::Contains("repeats a key"));

    auto bytes = mpp::dumps(std::string("ok"));
    bytes.push_back(std::byte{0});
    CHECK_THROWS_WITH(mpp::loads<std::string>(bytes), Catch::Contains("1 trailing byte"));
    CHECK_THROWS_AS(mpp::loads<int>(as_bytes({1, 2, 3, 4, 5})), mpp::SerializationError);
    CHECK_THROWS_AS(mpp::loads<int>({}), mpp::SerializationError);
}

TEST_CASE("hostile nesting depth throws instead of overflowing the stack", "[serializer]") {
    // A chain of 100000 "present" flags each followed by an int: a million-deep unique_ptr chain.
    std::vector<std::byte> hostile;
    for (int i = 0; i < 100000; ++i) {
        const auto link = as_bytes({0, 0, 0, 0, 1});
        hostile.insert(hostile.end(), link.begin(), link.end());
    }
    CHECK_THROWS_WITH(mpp::loads<chain>(hostile), Catch::Contains("nest deeper than"));

    // Honest chains below the limit work both ways; above it, encoding refuses too.
    chain shallow;
    chain* tail = &shallow;
    for (int i = 0; i < 500; ++i) {
        tail->next = std::make_unique<chain>();
        tail->next->value = i;
        tail = tail->next.get();
    }
    const auto back = round_trip(shallow);
    int length = 0;
    for (const chain* at = &back; at->next; at = at->next.get()) ++length;
    CHECK(length == 500);
    for (int i = 0; i < 1000; ++i) {
        tail->next = std::make_unique<chain>();
        tail = tail->next.get();
    }
    CHECK_THROWS_AS(mpp::dumps(shallow), mpp::SerializationError);
    // Dismantle iteratively: the default destructor of a 1500-deep chain recurses too.
    for (auto next = std::move(shallow.next); next;) next = std::move(next->next);
}

namespace {

struct fuzz_record {
    std::string name;
    std::vector<std::optional<std::int16_t>> readings;
    std::unique_ptr<fuzz_record> child;
    template <class Ar>
    void serialize(Ar& ar) {
        ar(name, readings, child);
    }
};

using fuzz_type =
    std::tuple<std::vector<std::string>, std::map<int, std::optional<double>>,
               std::variant<std::monostate, std::int64_t, std::string, std::vector<bool>>, fuzz_record,
               std::set<std::pair<std::uint8_t, std::string>>, std::deque<std::list<char>>,
               std::unordered_map<std::string, std::vector<double>>, std::array<std::uint16_t, 3>, bool, colour,
               resource_handle, std::vector<std::vector<std::int32_t>>>;

fuzz_type fuzz_sample() {
    fuzz_type value;
    std::get<0>(value) = {"alpha", "", "a somewhat longer string to give the mutator room"};
    std::get<1>(value) = {{1, 1.5}, {2, std::nullopt}, {-3, -0.0}};
    std::get<2>(value) = std::vector<bool>{true, false, true};
    auto& record = std::get<3>(value);
    record.name = "root";
    record.readings = {1, std::nullopt, -2};
    record.child = std::make_unique<fuzz_record>();
    record.child->name = "leaf";
    std::get<4>(value) = {{1, "x"}, {2, "yy"}};
    std::get<5>(value) = {{'a', 'b'}, {}, {'c'}};
    std::get<6>(value) = {{"k", {1, 2, 3}}};
    std::get<7>(value) = {7, 8, 9};
    std::get<8>(value) = true;
    std::get<9>(value) = colour::green;
    std::get<10>(value) = resource_handle{77};
    std::get<11>(value) = {{1, 2}, {}, {3}};
    return value;
}

// Decoding must either succeed or throw SerializationError; anything else escapes and fails the test.
// No single allocation may exceed a small multiple of the input (the largest node or element
// footprint per encoded byte), whatever counts the bytes claim.
bool decodes(std::span<const std::byte> bytes) {
    largest_allocation = 0;
    struct allocation_check {
        std::size_t input_size;
        ~allocation_check() { CHECK(largest_allocation <= 64 * input_size + 4096); }
    } check{bytes.size()};
    try {
        (void)mpp::loads<fuzz_type>(bytes);
        return true;
    } catch (const mpp::SerializationError& error) {
        CHECK(std::string(error.what()).size() > 0);
        return false;
    }
}

}  // namespace

TEST_CASE("every truncation of a valid encoding is a SerializationError", "[serializer][fuzz]") {
    const auto bytes = mpp::dumps(fuzz_sample());
    REQUIRE(decodes(bytes));
    std::size_t failures = 0;
    for (std::size_t length = 0; length < bytes.size(); ++length) {
        // Copy the prefix into its own allocation so ASan sees any read past its end.
        const std::vector<std::byte> prefix(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(length));
        if (!decodes(prefix)) ++failures;
    }
    CHECK(failures == bytes.size());
}

TEST_CASE("random mutations of a valid encoding never crash, over-read or over-allocate", "[serializer][fuzz]") {
    const auto original = mpp::dumps(fuzz_sample());
    std::mt19937_64 random(20261122);
    std::size_t accepted = 0;
    std::size_t rejected = 0;
    for (int round = 0; round < 4000; ++round) {
        auto bytes = original;
        const int edits = 1 + static_cast<int>(random() % 4);
        for (int edit = 0; edit < edits; ++edit) {
            const std::size_t at = random() % bytes.size();
            switch (random() % 5) {
                case 0: bytes[at] = static_cast<std::byte>(random()); break;  // overwrite
                case 1: bytes[at] ^= static_cast<std::byte>(1u << (random() % 8)); break;  // flip a bit
                case 2:  // plant a huge little-endian count
                    for (std::size_t i = 0; i < 8 && at + i < bytes.size(); ++i) bytes[at + i] = std::byte{0x7F};
                    break;
                case 3: bytes.erase(bytes.begin() + static_cast<std::ptrdiff_t>(at)); break;
                default: bytes.insert(bytes.begin() + static_cast<std::ptrdiff_t>(at), static_cast<std::byte>(random())); break;
            }
            if (bytes.empty()) bytes.push_back(std::byte{0});
        }
        if (decodes(bytes)) ++accepted; else ++rejected;
    }
    INFO("accepted " << accepted << ", rejected " << rejected);
    CHECK(rejected > 1000);  // most damage is detected...
    CHECK(accepted > 0);     // ...and flips inside payload bytes still decode to some value
}

TEST_CASE("a writer over fixed memory keeps its bytes there until one does not fit, then moves them all",
          "[serializer][writer]") {
    std::vector<std::byte> memory(64, std::byte{0xEE});
    mpp::writer out;
    out.write("ab", 2);
    mpp::detail::writer_storage::use_fixed(out, memory);
    REQUIRE(mpp::detail::writer_storage::in_fixed(out));
    CHECK(out.bytes().data() == memory.data());  // the bytes written before moved in
    mpp::binary_serializer::save(out, std::string(40, 'x'));
    std::byte* extended = out.extend(4);
    CHECK(extended == memory.data() + 2 + 8 + 40);  // in place, in the fixed memory
    out.truncate(out.size() - 4);
    CHECK(mpp::detail::writer_storage::in_fixed(out));
    CHECK(out.size() == 2 + 8 + 40);
    mpp::binary_serializer::save(out, std::string(40, 'y'));  // does not fit: moves to the writer's own buffer
    CHECK_FALSE(mpp::detail::writer_storage::in_fixed(out));
    const std::vector<std::byte> bytes = std::move(out).take();
    REQUIRE(bytes.size() == 2 + 2 * (8 + 40));
    CHECK(static_cast<char>(bytes[0]) == 'a');
    mpp::reader in(std::span<const std::byte>(bytes).subspan(2));
    CHECK(mpp::binary_serializer::load<std::string>(in) == std::string(40, 'x'));
    CHECK(mpp::binary_serializer::load<std::string>(in) == std::string(40, 'y'));
    in.expect_end();
}

TEST_CASE("a writer's fixed bytes survive take() and use_owned()", "[serializer][writer]") {
    std::vector<std::byte> memory(32);
    mpp::writer out;
    mpp::detail::writer_storage::use_fixed(out, memory);
    out.write("hello", 5);
    mpp::detail::writer_storage::use_owned(out);
    CHECK_FALSE(mpp::detail::writer_storage::in_fixed(out));
    out.write("!", 1);
    const std::vector<std::byte> bytes = std::move(out).take();
    CHECK(std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()) == "hello!");
}

TEST_CASE("strings and vectors of several MiB decode intact into prefaulted buffers", "[serializer][large]") {
    std::string text(std::size_t{9} << 20, '\0');
    for (std::size_t i = 0; i < text.size(); ++i) text[i] = static_cast<char>(i % 241);
    CHECK(mpp::loads<std::string>(mpp::dumps(text)) == text);
    std::vector<std::uint32_t> numbers(std::size_t{3} << 20);
    for (std::size_t i = 0; i < numbers.size(); ++i) numbers[i] = static_cast<std::uint32_t>(i * 2654435761u);
    CHECK(mpp::loads<std::vector<std::uint32_t>>(mpp::dumps(numbers)) == numbers);
}
