// Turns values into bytes and back for everything that crosses a process boundary:
// writer/reader, the mpp::codec<T> customization point, binary_serializer (the default),
// and pickle-like dumps/loads. Decoding is total: truncated, corrupt or trailing bytes throw
// SerializationError; it never reads out of bounds or allocates more than the input can describe.
#pragma once

#include <mpp/detail/bulk_memory.hpp>
#include <mpp/errors.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <complex>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

namespace mpp {

// Lengths and numbers are written as the machine stores them; every process of an mpp tree is a
// fork of the same program, but the documented format is little-endian, so say so loudly.
static_assert(std::endian::native == std::endian::little, "mpp's binary format is little-endian; this host is not");

namespace detail {
class nesting_guard;
struct writer_storage;
}

/// Appends encoded bytes to a buffer it owns. Cheap to reuse: clear() keeps the capacity.
class writer {
public:
    writer() = default;

    void write(std::span<const std::byte> bytes) { write(bytes.data(), bytes.size()); }
    void write(const void* data, std::size_t size) {
        if (size == 0) return;
        if (fixed_ != nullptr) {
            if (size <= fixed_capacity_ - fixed_size_) {
                std::memcpy(fixed_ + fixed_size_, data, size);
                fixed_size_ += size;
                return;
            }
            spill(size);
        }
        const auto* first = static_cast<const std::byte*>(data);
        buffer_.insert(buffer_.end(), first, first + size);  // one memmove, geometric growth
    }
    /// Appends n bytes and returns where they start, for the caller to fill in place
    /// (their values until then are unspecified).
    std::byte* extend(std::size_t n) {
        if (fixed_ != nullptr) {
            if (n <= fixed_capacity_ - fixed_size_) {
                std::byte* start = fixed_ + fixed_size_;
                fixed_size_ += n;
                return start;
            }
            spill(n);
        }
        const std::size_t old_size = buffer_.size();
        buffer_.resize(old_size + n);
        return buffer_.data() + old_size;
    }
    std::size_t size() const noexcept { return fixed_ != nullptr ? fixed_size_ : buffer_.size(); }
    std::span<const std::byte> bytes() const noexcept {
        if (fixed_ != nullptr) return {fixed_, fixed_size_};
        return buffer_;
    }
    std::vector<std::byte> take() && {
        if (fixed_ != nullptr) spill(0);
        return std::move(buffer_);
    }
    void clear() noexcept {
        fixed_size_ = 0;
        buffer_.clear();
    }
    /// Drops everything after the first `size` bytes (undoes a partial encode).
    void truncate(std::size_t size) noexcept {
        if (fixed_ != nullptr) {
            fixed_size_ = std::min(fixed_size_, size);
        } else if (size < buffer_.size()) {
            buffer_.resize(size);
        }
    }
    void reserve(std::size_t n) {
        if (fixed_ != nullptr) {
            if (n <= fixed_capacity_) return;
            spill(n - fixed_size_);
        }
        if (n <= buffer_.capacity()) return;
        buffer_.reserve(n);
        // A large encoding fills what it reserved: fault it in at once.
        detail::prefault_for_overwrite(buffer_.data() + buffer_.size(), buffer_.capacity() - buffer_.size());
    }

private:
    friend class detail::nesting_guard;
    friend struct detail::writer_storage;

    /// Leaves fixed storage for the owned buffer, with room for `more` bytes.
    void spill(std::size_t more) {
        const std::byte* old = fixed_;
        const std::size_t old_size = fixed_size_;
        fixed_ = nullptr;
        fixed_size_ = 0;
        fixed_capacity_ = 0;
        buffer_.clear();
        reserve(more == 0 ? old_size : std::max(old_size + more, 2 * old_size));  // take(): exact
        buffer_.assign(old, old + old_size);
    }

    std::vector<std::byte> buffer_;
    // While set (by the pool, through writer_storage), bytes go into this
    // caller-provided memory; a write that does not fit moves them to buffer_.
    std::byte* fixed_ = nullptr;
    std::size_t fixed_size_ = 0;
    std::size_t fixed_capacity_ = 0;
    std::size_t depth_ = 0;  // containers being encoded right now; bounds recursion
};

namespace detail {
/// The pool's access to a writer's storage: encode straight into shared memory.
struct writer_storage {
    /// From now on bytes go into `memory` (those written so far are copied
    /// there first), until one does not fit: then all move to the owned buffer.
    static void use_fixed(writer& out, std::span<std::byte> memory) noexcept {
        const std::span<const std::byte> so_far = out.bytes();
        if (so_far.size() > memory.size()) return;
        if (!so_far.empty() && so_far.data() != memory.data()) std::memmove(memory.data(), so_far.data(), so_far.size());
        out.fixed_size_ = so_far.size();
        out.fixed_ = memory.data();
        out.fixed_capacity_ = memory.size();
        out.buffer_.clear();
    }
    /// Back to the owned buffer (the bytes so far move with it).
    static void use_owned(writer& out) {
        if (out.fixed_ != nullptr) out.spill(0);
    }
    /// True while every byte written so far is in the fixed memory.
    static bool in_fixed(const writer& out) noexcept { return out.fixed_ != nullptr; }
};
}  // namespace detail

/// A bounds-checked cursor over bytes it does not own (they must outlive it).
class reader {
public:
    explicit reader(std::span<const std::byte> bytes) noexcept : bytes_(bytes) {}

    /// The next n bytes; SerializationError if fewer are left.
    std::span<const std::byte> read(std::size_t n) {
        if (n > remaining()) {
            throw SerializationError("mpp: truncated input: wanted " + std::to_string(n) + " bytes but only " +
                                     std::to_string(remaining()) + " are left");
        }
        auto chunk = bytes_.subspan(position_, n);
        position_ += n;
        return chunk;
    }
    std::size_t remaining() const noexcept { return bytes_.size() - position_; }
    std::size_t position() const noexcept { return position_; }
    /// SerializationError unless every byte was consumed.
    void expect_end() const {
        if (remaining() != 0) {
            throw SerializationError("mpp: " + std::to_string(remaining()) + " trailing bytes after the decoded value (" +
                                     std::to_string(position_) + " bytes were used)");
        }
    }

private:
    friend class detail::nesting_guard;
    std::span<const std::byte> bytes_;
    std::size_t position_ = 0;
    std::size_t depth_ = 0;  // containers being decoded right now; bounds recursion on hostile input
};

/// The customization point: specialize with
///   template <> struct mpp::codec<T> { static void save(mpp::writer&, const T&); static T load(mpp::reader&); };
/// A specialization wins over everything else, in every Serializer. Declare it before T is first
/// encoded (like any specialization), so every use sees it.
template <class T>
struct codec;

template <class T>
concept has_codec = requires(writer& out, reader& in, const T& value) {
    codec<T>::save(out, value);
    { codec<T>::load(in) } -> std::convertible_to<T>;
};

template <class Serializer, class T>
void save_with(writer& out, const T& value);
template <class Serializer, class T>
T load_with(reader& in);

/// What a `template <class Ar> void serialize(Ar& ar) { ar(a, b, c); }` member receives when saving.
template <class Serializer>
class save_archive {
public:
    static constexpr bool is_loading = false;
    explicit save_archive(writer& out) noexcept : out_(out) {}
    template <class... Ts>
    void operator()(const Ts&... values) {
        (save_one(values), ...);  // a comma fold runs left to right
    }

private:
    template <class T>
    void save_one(const T& value) {
        if constexpr (std::is_array_v<T>) {
            for (const auto& element : value) save_one(element);  // a C array member: its elements in order
        } else {
            save_with<Serializer>(out_, value);
        }
    }
    writer& out_;
};

/// What a serialize member receives when loading: each argument is assigned in order.
template <class Serializer>
class load_archive {
public:
    static constexpr bool is_loading = true;
    explicit load_archive(reader& in) noexcept : in_(in) {}
    template <class... Ts>
    void operator()(Ts&... values) {
        (load_one(values), ...);
    }

private:
    template <class T>
    void load_one(T& value) {
        if constexpr (std::is_array_v<T>) {
            for (auto& element : value) load_one(element);
        } else {
            value = load_with<Serializer, T>(in_);
        }
    }
    reader& in_;
};

struct binary_serializer;

namespace detail {

/// Bounds how deep containers nest while encoding or decoding, so a hostile message describing a
/// million-deep chain of unique_ptr<Node> throws instead of overflowing the stack (pickle does the same).
class nesting_guard {
public:
    static constexpr std::size_t max_depth = 1000;
    explicit nesting_guard(writer& out) : depth_(out.depth_) { enter(); }
    explicit nesting_guard(reader& in) : depth_(in.depth_) { enter(); }
    ~nesting_guard() { --depth_; }
    nesting_guard(const nesting_guard&) = delete;
    nesting_guard& operator=(const nesting_guard&) = delete;

private:
    void enter() {
        if (depth_ >= max_depth) {
            throw SerializationError("mpp: values nest deeper than " + std::to_string(max_depth) +
                                     " containers; refusing to recurse further");
        }
        ++depth_;
    }
    std::size_t& depth_;
};

namespace serialize_lookup {
// Stops unqualified lookup here so that only the serialize() found by ADL next to T is considered.
void serialize() = delete;

template <class T>
concept has_free = requires(T& value, save_archive<binary_serializer>& out, load_archive<binary_serializer>& in) {
    serialize(out, value);
    serialize(in, value);
};

template <class T, class Archive>
void call(Archive& archive, T& value) {
    serialize(archive, value);
}
}  // namespace serialize_lookup

template <class T>
concept has_member_serialize =
    requires(T& value, save_archive<binary_serializer>& out, load_archive<binary_serializer>& in) {
        value.serialize(out);
        value.serialize(in);
    };

/// Types a user made encodable with a serialize member or free function (loading default-constructs
/// them, so they must be default-constructible; serializable<T> checks that, not this).
template <class T>
concept has_serialize = has_member_serialize<T> || serialize_lookup::has_free<T>;

/// Types that would dangle in another process: refused at compile time.
template <class T>
struct is_refused
    : std::bool_constant<(std::is_pointer_v<T> && !std::is_function_v<std::remove_pointer_t<T>>) ||
                         std::is_member_pointer_v<T>> {};
template <class C, class Traits>
struct is_refused<std::basic_string_view<C, Traits>> : std::true_type {};
template <class T, std::size_t Extent>
struct is_refused<std::span<T, Extent>> : std::true_type {};

/// Per-family encoding of the built-in types; `known` is false for everything else.
/// The format, all little-endian: numbers as stored; bool and every presence flag (optional,
/// unique_ptr) as one byte 0/1; lengths as uint64 then the elements; std::array, pair, tuple,
/// complex and duration as their elements with no prefix; variant as a uint32 index then the value;
/// maps as a length then key, value, key, value...
template <class T>
struct builtin_codec {
    static constexpr bool known = false;
};

template <class T>
constexpr bool encodable();

/// Fallback rule 4: a trivially copyable type that is none of the above is copied as bytes.
template <class T>
constexpr bool raw_encodable() {
    return std::is_trivially_copyable_v<T> && std::is_object_v<T> && !std::is_array_v<T> && !is_refused<T>::value &&
           !builtin_codec<T>::known;
}

template <class T>
constexpr bool encodable() {
    if constexpr (!std::is_object_v<T> || std::is_volatile_v<T> || std::is_array_v<T>) {
        return false;
    } else if constexpr (std::is_const_v<T>) {
        return encodable<std::remove_const_t<T>>();  // e.g. std::pair<const std::string, int>
    } else if constexpr (has_codec<T>) {
        return true;
    } else if constexpr (has_serialize<T>) {
        return std::default_initializable<T>;
    } else if constexpr (builtin_codec<T>::known) {
        return builtin_codec<T>::encodable;
    } else {
        return raw_encodable<T>();
    }
}

/// True when the encoding of T is exactly its object bytes and every byte pattern is a valid T,
/// so a contiguous run of them is one memcpy each way.
template <class T>
constexpr bool bitwise();

/// The fewest bytes any encoding of T takes; bounds element counts read from untrusted input.
/// User types are assumed to take at least one byte.
template <class T>
constexpr std::size_t min_encoded_size() {
    if constexpr (std::is_const_v<T>) {
        return min_encoded_size<std::remove_const_t<T>>();
    } else if constexpr (has_codec<T> || has_serialize<T>) {
        return 1;
    } else if constexpr (builtin_codec<T>::known) {
        return builtin_codec<T>::min_size;
    } else {
        return sizeof(T);
    }
}

constexpr std::size_t saturating_multiply(std::size_t a, std::size_t b) {
    if (a != 0 && b > SIZE_MAX / a) return SIZE_MAX;
    return a * b;
}

constexpr std::size_t saturating_add(std::size_t a, std::size_t b) { return b > SIZE_MAX - a ? SIZE_MAX : a + b; }

template <class T>
void save_trivial(writer& out, const T& value) {
    out.write(std::addressof(value), sizeof(T));
}

template <class T>
T load_trivial(reader& in) {
    const auto bytes = in.read(sizeof(T));
    if constexpr (std::is_default_constructible_v<T>) {
        T value;
        std::memcpy(static_cast<void*>(std::addressof(value)), bytes.data(), sizeof(T));
        return value;
    } else {
        // Not std::bit_cast: g++ 12 stops calling a capturing lambda trivially copyable once its
        // deleted assignment was looked up (as Pool does), and bit_cast's constraint then rejects
        // it. memcpy into suitable storage implicitly creates the object (C++20 implicit lifetime).
        // (Keep this: Pool with a value-capturing lambda fails to compile without it, tests/pool_test.cpp.)
        alignas(T) std::byte storage[sizeof(T)];
        std::memcpy(storage, bytes.data(), sizeof(T));
        return *std::launder(reinterpret_cast<T*>(storage));
    }
}

inline void save_length(writer& out, std::size_t length) { save_trivial(out, static_cast<std::uint64_t>(length)); }

/// Reads an element count and checks that the bytes left could hold that many elements, before
/// anything is reserved: a corrupt 2^60 becomes an exception, not an allocation.
template <class Element>
std::size_t load_count(reader& in, const char* container) {
    const auto count = load_trivial<std::uint64_t>(in);
    constexpr std::size_t element_size = std::max<std::size_t>(min_encoded_size<Element>(), 1);
    if (count > in.remaining() / element_size) {
        throw SerializationError(std::string("mpp: corrupt input: a ") + container + " claims " +
                                 std::to_string(count) + " elements of at least " + std::to_string(element_size) +
                                 " bytes each, but only " + std::to_string(in.remaining()) + " bytes are left");
    }
    return static_cast<std::size_t>(count);
}

template <class T>
void save_element(writer& out, const T& value);
template <class T>
T load_element(reader& in);

// ---- arithmetic and enums ----

template <class T>
    requires std::is_arithmetic_v<T>
struct builtin_codec<T> {
    static constexpr bool known = true;
    static constexpr bool encodable = true;
    static constexpr std::size_t min_size = std::is_same_v<T, bool> ? 1 : sizeof(T);

    static void save(writer& out, T value) {
        if constexpr (std::is_same_v<T, bool>) {
            save_trivial(out, static_cast<std::uint8_t>(value ? 1 : 0));
        } else {
            save_trivial(out, value);
        }
    }
    static T load(reader& in) {
        if constexpr (std::is_same_v<T, bool>) {
            const auto byte = load_trivial<std::uint8_t>(in);
            if (byte > 1) {
                throw SerializationError("mpp: corrupt input: a bool is encoded as " + std::to_string(byte) +
                                         ", expected 0 or 1");
            }
            return byte == 1;
        } else {
            return load_trivial<T>(in);
        }
    }
};

template <class T>
    requires std::is_enum_v<T>
struct builtin_codec<T> {
    using underlying = std::underlying_type_t<T>;
    static constexpr bool known = true;
    static constexpr bool encodable = true;
    static constexpr std::size_t min_size = builtin_codec<underlying>::min_size;

    static void save(writer& out, T value) { builtin_codec<underlying>::save(out, static_cast<underlying>(value)); }
    static T load(reader& in) { return static_cast<T>(builtin_codec<underlying>::load(in)); }
};

// ---- strings and sequences ----

template <class C, class Traits, class Alloc>
struct builtin_codec<std::basic_string<C, Traits, Alloc>> {
    using string = std::basic_string<C, Traits, Alloc>;
    static constexpr bool known = true;
    static constexpr bool encodable = std::is_arithmetic_v<C> && !std::is_same_v<C, bool>;
    static constexpr std::size_t min_size = 8;

    static void save(writer& out, const string& value) {
        save_length(out, value.size());
        out.write(value.data(), value.size() * sizeof(C));
    }
    static string load(reader& in) {
        const std::size_t count = load_count<C>(in, "std::basic_string");
        const auto bytes = in.read(count * sizeof(C));
        if (bytes.size() >= detail::bulk_prefault_bytes) {
            // A large string: fault its fresh buffer in at once, then one copy.
            string value;
            value.reserve(count);
            detail::prefault_for_overwrite(value.data(), bytes.size());
            value.append(reinterpret_cast<const C*>(bytes.data()), count);  // C is bitwise (encodable)
            return value;
        }
        if constexpr (sizeof(C) == 1) {
            return string(reinterpret_cast<const C*>(bytes.data()), count);  // one copy
        } else {
            string value(count, C{});
            std::memcpy(value.data(), bytes.data(), bytes.size());
            return value;
        }
    }
};

/// Reads Ts out of bytes that need not be aligned for T, one small memcpy each (g++ 12 makes that
/// a plain 8-byte load/store loop). Random access, so a vector sizes itself once and never zeroes.
template <class T>
class unaligned_iterator {
public:
    using iterator_category = std::random_access_iterator_tag;
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    using pointer = void;
    using reference = T;

    unaligned_iterator() = default;
    explicit unaligned_iterator(const std::byte* at) noexcept : at_(at) {}

    T operator*() const noexcept {
        T value;
        std::memcpy(static_cast<void*>(std::addressof(value)), at_, sizeof(T));
        return value;
    }
    T operator[](difference_type n) const noexcept { return *(*this + n); }
    unaligned_iterator& operator++() noexcept { return *this += 1; }
    unaligned_iterator operator++(int) noexcept {
        auto before = *this;
        *this += 1;
        return before;
    }
    unaligned_iterator& operator--() noexcept { return *this -= 1; }
    unaligned_iterator operator--(int) noexcept {
        auto before = *this;
        *this -= 1;
        return before;
    }
    unaligned_iterator& operator+=(difference_type n) noexcept {
        at_ += n * static_cast<difference_type>(sizeof(T));
        return *this;
    }
    unaligned_iterator& operator-=(difference_type n) noexcept { return *this += -n; }
    friend unaligned_iterator operator+(unaligned_iterator it, difference_type n) noexcept { return it += n; }
    friend unaligned_iterator operator+(difference_type n, unaligned_iterator it) noexcept { return it += n; }
    friend unaligned_iterator operator-(unaligned_iterator it, difference_type n) noexcept { return it -= n; }
    friend difference_type operator-(unaligned_iterator a, unaligned_iterator b) noexcept {
        return (a.at_ - b.at_) / static_cast<difference_type>(sizeof(T));
    }
    friend bool operator==(unaligned_iterator a, unaligned_iterator b) noexcept { return a.at_ == b.at_; }
    friend auto operator<=>(unaligned_iterator a, unaligned_iterator b) noexcept { return a.at_ <=> b.at_; }

private:
    const std::byte* at_ = nullptr;
};

template <class T, class Alloc>
struct builtin_codec<std::vector<T, Alloc>> {
    using vector = std::vector<T, Alloc>;
    static constexpr bool known = true;
    static constexpr bool encodable = detail::encodable<T>();
    static constexpr std::size_t min_size = 8;

    static void save(writer& out, const vector& value) {
        save_length(out, value.size());
        if constexpr (bitwise<T>()) {
            out.write(value.data(), value.size() * sizeof(T));
        } else {
            nesting_guard guard(out);
            for (const T& element : value) save_element(out, element);  // also binds vector<bool>'s proxies
        }
    }
    static vector load(reader& in) {
        const std::size_t count = load_count<T>(in, "std::vector");
        vector value;
        if constexpr (bitwise<T>()) {
            const auto bytes = in.read(count * sizeof(T));
            // One allocation of exactly count elements, filled in one pass without zeroing first.
            // Aligned bytes (the usual case: dumps() output, aligned ring slots) are read as Ts by
            // one memmove; misaligned ones through an iterator doing one small memcpy per element.
            if (count == 0) return value;
            if (bytes.size() >= detail::bulk_prefault_bytes) {
                value.reserve(count);
                detail::prefault_for_overwrite(value.data(), bytes.size());
            }
            if (reinterpret_cast<std::uintptr_t>(bytes.data()) % alignof(T) == 0) {
                const T* first = reinterpret_cast<const T*>(bytes.data());
                value.assign(first, first + count);
            } else {
                value.assign(unaligned_iterator<T>(bytes.data()), unaligned_iterator<T>(bytes.data() + bytes.size()));
            }
        } else {
            nesting_guard guard(in);
            value.reserve(count);
            for (std::size_t i = 0; i < count; ++i) value.push_back(load_element<T>(in));
        }
        return value;
    }
};

template <class Sequence, class T>
struct sequence_codec {
    static constexpr bool known = true;
    static constexpr bool encodable = detail::encodable<T>();
    static constexpr std::size_t min_size = 8;

    static void save(writer& out, const Sequence& value) {
        save_length(out, value.size());
        nesting_guard guard(out);
        for (const T& element : value) save_element(out, element);
    }
    static Sequence load(reader& in) {
        const std::size_t count = load_count<T>(in, "sequence");
        nesting_guard guard(in);
        Sequence value;
        for (std::size_t i = 0; i < count; ++i) value.push_back(load_element<T>(in));
        return value;
    }
};

template <class T, class Alloc>
struct builtin_codec<std::deque<T, Alloc>> : sequence_codec<std::deque<T, Alloc>, T> {};
template <class T, class Alloc>
struct builtin_codec<std::list<T, Alloc>> : sequence_codec<std::list<T, Alloc>, T> {};

template <class T, std::size_t N>
struct builtin_codec<std::array<T, N>> {
    using array = std::array<T, N>;
    static constexpr bool known = true;
    static constexpr bool encodable = detail::encodable<T>();
    static constexpr std::size_t min_size = saturating_multiply(N, min_encoded_size<T>());

    static void save(writer& out, const array& value) {
        if constexpr (bitwise<T>()) {
            out.write(value.data(), N * sizeof(T));
        } else {
            for (const T& element : value) save_element(out, element);
        }
    }
    static array load(reader& in) {
        if constexpr (bitwise<T>()) {
            const auto bytes = in.read(N * sizeof(T));
            array value;
            if constexpr (N > 0) std::memcpy(static_cast<void*>(value.data()), bytes.data(), bytes.size());
            return value;
        } else {
            return load_each(in, std::make_index_sequence<N>{});
        }
    }

private:
    template <std::size_t... I>
    static array load_each(reader& in, std::index_sequence<I...>) {
        return array{((void)I, load_element<T>(in))...};  // braced lists evaluate left to right
    }
};

// ---- product and sum types ----

template <class A, class B>
struct builtin_codec<std::pair<A, B>> {
    static constexpr bool known = true;
    static constexpr bool encodable = detail::encodable<A>() && detail::encodable<B>();
    static constexpr std::size_t min_size = saturating_add(min_encoded_size<A>(), min_encoded_size<B>());

    static void save(writer& out, const std::pair<A, B>& value) {
        save_element(out, value.first);
        save_element(out, value.second);
    }
    static std::pair<A, B> load(reader& in) { return std::pair<A, B>{load_element<A>(in), load_element<B>(in)}; }
};

template <class... Ts>
struct builtin_codec<std::tuple<Ts...>> {
    static constexpr bool known = true;
    static constexpr bool encodable = (detail::encodable<Ts>() && ...);
    static constexpr std::size_t min_size = [] {
        std::size_t total = 0;
        ((total = saturating_add(total, min_encoded_size<Ts>())), ...);
        return total;
    }();

    static void save(writer& out, const std::tuple<Ts...>& value) {
        std::apply([&](const Ts&... elements) { (save_element(out, elements), ...); }, value);
    }
    static std::tuple<Ts...> load([[maybe_unused]] reader& in) { return std::tuple<Ts...>{load_element<Ts>(in)...}; }
};

template <class T>
struct builtin_codec<std::optional<T>> {
    static constexpr bool known = true;
    static constexpr bool encodable = detail::encodable<T>();
    static constexpr std::size_t min_size = 1;

    static void save(writer& out, const std::optional<T>& value) {
        builtin_codec<bool>::save(out, value.has_value());
        if (value) save_element(out, *value);
    }
    static std::optional<T> load(reader& in) {
        if (!builtin_codec<bool>::load(in)) return std::nullopt;
        return std::optional<T>(std::in_place, load_element<T>(in));
    }
};

template <class... Ts>
struct builtin_codec<std::variant<Ts...>> {
    using variant = std::variant<Ts...>;
    static constexpr bool known = true;
    static constexpr bool encodable = (detail::encodable<Ts>() && ...);
    static constexpr std::size_t min_size = 4 + std::min({min_encoded_size<Ts>()...});

    static void save(writer& out, const variant& value) {
        if (value.valueless_by_exception()) throw SerializationError("mpp: cannot encode a valueless std::variant");
        save_trivial(out, static_cast<std::uint32_t>(value.index()));
        std::visit([&out](const auto& alternative) { save_element(out, alternative); }, value);
    }
    static variant load(reader& in) {
        const auto index = load_trivial<std::uint32_t>(in);
        if (index >= sizeof...(Ts)) {
            throw SerializationError("mpp: corrupt input: std::variant index " + std::to_string(index) +
                                     " is out of range for " + std::to_string(sizeof...(Ts)) + " alternatives");
        }
        return loaders(std::index_sequence_for<Ts...>{})[index](in);
    }

private:
    template <std::size_t I>
    static variant load_alternative(reader& in) {
        return variant(std::in_place_index<I>, load_element<std::variant_alternative_t<I, variant>>(in));
    }
    template <std::size_t... I>
    static constexpr std::array<variant (*)(reader&), sizeof...(Ts)> loaders(std::index_sequence<I...>) {
        return {&load_alternative<I>...};
    }
};

// ---- associative containers ----

/// Maps and sets: a count, then the elements in iteration order. In a unique-key container a
/// repeated key can only come from corrupt input, so it is an error rather than silently dropped.
template <class Container, class Key, class Mapped, bool Hashed, bool UniqueKeys = true>
struct associative_codec {
    static constexpr bool is_map = !std::is_void_v<Mapped>;
    using element = std::conditional_t<is_map, std::pair<Key, std::conditional_t<is_map, Mapped, int>>, Key>;
    static constexpr bool known = true;
    static constexpr bool encodable = detail::encodable<element>();
    static constexpr std::size_t min_size = 8;

    static void save(writer& out, const Container& value) {
        save_length(out, value.size());
        nesting_guard guard(out);
        for (const auto& entry : value) {
            if constexpr (is_map) {
                save_element(out, entry.first);
                save_element(out, entry.second);
            } else {
                save_element(out, entry);
            }
        }
    }
    static Container load(reader& in) {
        const std::size_t count = load_count<element>(in, is_map ? "map" : "set");
        nesting_guard guard(in);
        Container value;
        if constexpr (Hashed) value.reserve(count);
        for (std::size_t i = 0; i < count; ++i) {
            Key key = load_element<Key>(in);
            if constexpr (is_map) {
                Mapped mapped = load_element<Mapped>(in);
                emplace(value, std::move(key), std::move(mapped));
            } else {
                emplace(value, std::move(key));
            }
        }
        if (UniqueKeys && value.size() != count) {
            throw SerializationError("mpp: corrupt input: a " + std::string(is_map ? "map" : "set") + " of " +
                                     std::to_string(count) + " elements repeats a key");
        }
        return value;
    }

private:
    template <class... Args>
    static void emplace(Container& value, Args&&... args) {
        if constexpr (Hashed) {
            value.emplace(std::forward<Args>(args)...);
        } else {
            // Saved in order, so the end is the right place: amortized O(1), and equal keys of a
            // multimap keep their order.
            value.emplace_hint(value.end(), std::forward<Args>(args)...);
        }
    }
};

template <class K, class V, class Compare, class Alloc>
struct builtin_codec<std::map<K, V, Compare, Alloc>>
    : associative_codec<std::map<K, V, Compare, Alloc>, K, V, false> {};
template <class K, class V, class Hash, class Equal, class Alloc>
struct builtin_codec<std::unordered_map<K, V, Hash, Equal, Alloc>>
    : associative_codec<std::unordered_map<K, V, Hash, Equal, Alloc>, K, V, true> {};
template <class K, class Compare, class Alloc>
struct builtin_codec<std::set<K, Compare, Alloc>> : associative_codec<std::set<K, Compare, Alloc>, K, void, false> {};
template <class K, class Hash, class Equal, class Alloc>
struct builtin_codec<std::unordered_set<K, Hash, Equal, Alloc>>
    : associative_codec<std::unordered_set<K, Hash, Equal, Alloc>, K, void, true> {};
template <class K, class V, class Compare, class Alloc>
struct builtin_codec<std::multimap<K, V, Compare, Alloc>>
    : associative_codec<std::multimap<K, V, Compare, Alloc>, K, V, false, false> {};
template <class K, class V, class Hash, class Equal, class Alloc>
struct builtin_codec<std::unordered_multimap<K, V, Hash, Equal, Alloc>>
    : associative_codec<std::unordered_multimap<K, V, Hash, Equal, Alloc>, K, V, true, false> {};
template <class K, class Compare, class Alloc>
struct builtin_codec<std::multiset<K, Compare, Alloc>>
    : associative_codec<std::multiset<K, Compare, Alloc>, K, void, false, false> {};
template <class K, class Hash, class Equal, class Alloc>
struct builtin_codec<std::unordered_multiset<K, Hash, Equal, Alloc>>
    : associative_codec<std::unordered_multiset<K, Hash, Equal, Alloc>, K, void, true, false> {};

// ---- everything else on the list ----

template <class T>
struct builtin_codec<std::unique_ptr<T>> {
    static constexpr bool known = true;
    static constexpr bool encodable = !std::is_array_v<T> && detail::encodable<T>();
    static constexpr std::size_t min_size = 1;

    static void save(writer& out, const std::unique_ptr<T>& value) {
        builtin_codec<bool>::save(out, value != nullptr);
        if (value) {
            nesting_guard guard(out);
            save_element(out, *value);
        }
    }
    static std::unique_ptr<T> load(reader& in) {
        if (!builtin_codec<bool>::load(in)) return nullptr;
        nesting_guard guard(in);
        return std::make_unique<T>(load_element<T>(in));
    }
};

template <>
struct builtin_codec<std::monostate> {
    static constexpr bool known = true;
    static constexpr bool encodable = true;
    static constexpr std::size_t min_size = 1;
    // One byte rather than none, so that no built-in type encodes to nothing (see load_count).
    static void save(writer& out, std::monostate) { save_trivial(out, std::uint8_t{0}); }
    static std::monostate load(reader& in) {
        in.read(1);
        return {};
    }
};

template <class Rep, class Period>
struct builtin_codec<std::chrono::duration<Rep, Period>> {
    using duration = std::chrono::duration<Rep, Period>;
    static constexpr bool known = true;
    static constexpr bool encodable = detail::encodable<Rep>();
    static constexpr std::size_t min_size = min_encoded_size<Rep>();

    static void save(writer& out, const duration& value) { save_element(out, value.count()); }
    static duration load(reader& in) { return duration(load_element<Rep>(in)); }
};

template <class T>
struct builtin_codec<std::complex<T>> {
    static constexpr bool known = true;
    static constexpr bool encodable = detail::encodable<T>();
    static constexpr std::size_t min_size = saturating_multiply(2, min_encoded_size<T>());

    static void save(writer& out, const std::complex<T>& value) {
        save_element(out, value.real());
        save_element(out, value.imag());
    }
    static std::complex<T> load(reader& in) {
        T real = load_element<T>(in);
        T imag = load_element<T>(in);
        return {real, imag};
    }
};

/// Built-ins whose encoding is their elements back to back with no padding, which is also their
/// object layout: a vector of them (points as std::array<double, 3>, samples as complex) is one copy.
template <class T>
struct is_bitwise_composite : std::false_type {};
template <class U, std::size_t N>
struct is_bitwise_composite<std::array<U, N>>
    : std::bool_constant<N != 0 && bitwise<U>() && sizeof(std::array<U, N>) == N * sizeof(U)> {};
template <class U>
struct is_bitwise_composite<std::complex<U>>
    : std::bool_constant<bitwise<U>() && std::is_trivially_copyable_v<std::complex<U>> &&
                         sizeof(std::complex<U>) == 2 * sizeof(U)> {};
template <class Rep, class Period>
struct is_bitwise_composite<std::chrono::duration<Rep, Period>>
    : std::bool_constant<bitwise<Rep>() && std::is_trivially_copyable_v<std::chrono::duration<Rep, Period>> &&
                         sizeof(std::chrono::duration<Rep, Period>) == sizeof(Rep)> {};

template <class T>
constexpr bool bitwise() {
    if constexpr (std::is_const_v<T>) {
        return false;  // a const element cannot be memcpy'd into
    } else if constexpr (has_codec<T> || has_serialize<T> || !std::is_default_constructible_v<T>) {
        return false;
    } else if constexpr (std::is_same_v<T, bool>) {
        return false;
    } else if constexpr (std::is_arithmetic_v<T>) {
        return true;
    } else if constexpr (std::is_enum_v<T>) {
        return bitwise<std::underlying_type_t<T>>();
    } else if constexpr (builtin_codec<T>::known) {
        return is_bitwise_composite<T>::value;
    } else {
        return raw_encodable<T>();
    }
}

/// The binary encoding of one value, by the documented precedence:
/// codec<T>, then a serialize member or ADL function, then the built-ins, then raw bytes.
template <class T>
void binary_save(writer& out, const T& value) {
    if constexpr (has_codec<T>) {
        codec<T>::save(out, value);
    } else if constexpr (has_member_serialize<T>) {
        save_archive<binary_serializer> archive(out);
        const_cast<T&>(value).serialize(archive);  // saving only reads; serialize is one member for both ways
    } else if constexpr (serialize_lookup::has_free<T>) {
        save_archive<binary_serializer> archive(out);
        serialize_lookup::call(archive, const_cast<T&>(value));
    } else if constexpr (builtin_codec<T>::known) {
        builtin_codec<T>::save(out, value);
    } else {
        save_trivial(out, value);
    }
}

template <class T>
T binary_load(reader& in) {
    if constexpr (has_codec<T>) {
        return codec<T>::load(in);
    } else if constexpr (has_serialize<T>) {
        T value{};
        load_archive<binary_serializer> archive(in);
        if constexpr (has_member_serialize<T>) {
            value.serialize(archive);
        } else {
            serialize_lookup::call(archive, value);
        }
        return value;
    } else if constexpr (builtin_codec<T>::known) {
        return builtin_codec<T>::load(in);
    } else {
        return load_trivial<T>(in);
    }
}

}  // namespace detail

/// True when binary_serializer can encode and decode T.
template <class T>
concept serializable = detail::encodable<std::remove_cv_t<T>>();

/// Anything with binary_serializer's shape: static template save(writer&, const T&) and load(reader&).
template <class S>
concept serializer_type = requires(writer& out, reader& in, const int& value) {
    S::template save<int>(out, value);
    { S::template load<int>(in) } -> std::same_as<int>;
};

/// The default Serializer: the compact binary format described in DESIGN.md.
struct binary_serializer {
    template <class T>
    static void save(writer& out, const T& value) {
        static_assert(serializable<T>,
                      "mpp cannot encode this type: specialize mpp::codec<T> (static save/load) or add a member "
                      "`template <class Ar> void serialize(Ar& ar) { ar(members...); }`; pointers, std::string_view "
                      "and std::span are refused because they would dangle in another process (send std::string, "
                      "std::vector or std::array instead)");
        if constexpr (serializable<T>) detail::binary_save<std::remove_cv_t<T>>(out, value);
    }
    template <class T>
    static T load(reader& in) {
        static_assert(serializable<T>,
                      "mpp cannot decode this type: specialize mpp::codec<T> (static save/load) or add a member "
                      "`template <class Ar> void serialize(Ar& ar) { ar(members...); }` to a default-constructible "
                      "type; pointers, std::string_view and std::span are refused");
        if constexpr (serializable<T>) return detail::binary_load<std::remove_cv_t<T>>(in);
        else std::abort();  // unreachable: the static_assert above already failed
    }
};

namespace detail {
template <class T>
void save_element(writer& out, const T& value) {
    binary_serializer::save(out, value);
}
template <class T>
T load_element(reader& in) {
    return binary_serializer::load<T>(in);
}

template <class T>
struct is_flat_sequence : std::false_type {};
template <class T, class Alloc>
struct is_flat_sequence<std::vector<T, Alloc>> : std::bool_constant<bitwise<T>()> {};
template <class C, class Traits, class Alloc>
struct is_flat_sequence<std::basic_string<C, Traits, Alloc>> : std::bool_constant<bitwise<C>()> {};

template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};
template <class T>
struct is_pair_or_tuple : std::false_type {};
template <class A, class B>
struct is_pair_or_tuple<std::pair<A, B>> : std::true_type {};
template <class... Ts>
struct is_pair_or_tuple<std::tuple<Ts...>> : std::true_type {};

inline constexpr std::size_t unknown_size = SIZE_MAX;

/// The exact encoded size of the shapes dumps() sees most (numbers, strings, vectors of numbers,
/// pairs/tuples/optionals of those), so that their buffer is allocated once; unknown_size otherwise.
template <class T>
std::size_t binary_size_hint(const T& value) {
    if constexpr (has_codec<T> || has_serialize<T>) {
        return unknown_size;
    } else if constexpr (bitwise<T>()) {
        return sizeof(T);
    } else if constexpr (std::is_same_v<T, bool>) {
        return 1;
    } else if constexpr (std::is_enum_v<T>) {
        return binary_size_hint(static_cast<std::underlying_type_t<T>>(value));
    } else if constexpr (is_flat_sequence<T>::value) {
        return 8 + value.size() * sizeof(typename T::value_type);
    } else if constexpr (is_optional<T>::value) {
        return value ? saturating_add(1, binary_size_hint(*value)) : 1;
    } else if constexpr (is_pair_or_tuple<T>::value) {
        return std::apply(
            [](const auto&... elements) {
                std::size_t total = 0;
                ((total = saturating_add(total, binary_size_hint(elements))), ...);
                return total;
            },
            value);
    } else {
        return unknown_size;
    }
}
}  // namespace detail

/// The encoding the pool uses: mpp::codec<T> when specialized (mpp's handle types), otherwise
/// Serializer::save. So a custom Serializer still ships mpp handles.
template <class Serializer, class T>
void save_with(writer& out, const T& value) {
    if constexpr (has_codec<T>) {
        codec<T>::save(out, value);
    } else {
        Serializer::save(out, value);
    }
}

template <class Serializer, class T>
T load_with(reader& in) {
    if constexpr (has_codec<T>) {
        return codec<T>::load(in);
    } else {
        return Serializer::template load<T>(in);
    }
}

/// Like pickle.dumps: the bytes of one value.
template <class Serializer = binary_serializer, class T>
std::vector<std::byte> dumps(const T& value) {
    static_assert(serializer_type<Serializer>,
                  "mpp::dumps: a Serializer needs `template <class T> static void save(mpp::writer&, const T&)` and "
                  "`template <class T> static T load(mpp::reader&)`");
    writer out;
    if constexpr (std::is_same_v<Serializer, binary_serializer> && serializable<T>) {
        const std::size_t size = detail::binary_size_hint(value);
        out.reserve(size != detail::unknown_size ? size : 64);  // small messages: one allocation
    }
    save_with<Serializer>(out, value);
    return std::move(out).take();
}

/// Like pickle.loads: decodes one value that must use every byte (SerializationError otherwise).
template <class T, class Serializer = binary_serializer>
T loads(std::span<const std::byte> bytes) {
    static_assert(serializer_type<Serializer>,
                  "mpp::loads: a Serializer needs `template <class T> static void save(mpp::writer&, const T&)` and "
                  "`template <class T> static T load(mpp::reader&)`");
    reader in(bytes);
    T value = load_with<Serializer, T>(in);
    in.expect_end();
    return value;
}

}  // namespace mpp
