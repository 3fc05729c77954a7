// Value<T> and Array<T>: Python's multiprocessing.Value and Array, plain data in the shared
// segment that every process of the tree reads and writes in place, each with its own RLock.
// load()/store() take that lock, so a whole T is never seen half-written; compound updates
// (v = v + 1) need the caller to hold get_lock(), exactly as in Python.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <mutex>
#include <ranges>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "mpp/detail/segment.hpp"
#include "mpp/detail/shared_ref.hpp"
#include "mpp/errors.hpp"
#include "mpp/serializer.hpp"
#include "mpp/sync.hpp"

namespace mpp {

namespace detail {

template <class T>
struct value_cell {
    explicit value_cell(const T& initial) : value(initial) {}
    T value;
};

/// The elements live in their own segment allocation (every process maps the segment at the
/// same address, so the pointer is valid tree-wide); the cell frees them with itself.
template <class T>
struct array_cell {
    array_cell(std::size_t count, const T* first, const T& fill)
        : size(count),
          elements(static_cast<T*>(shared_segment::instance().allocate(bytes_for(count), alignof(T)))) {
        for (std::size_t i = 0; i < count; ++i) ::new (static_cast<void*>(elements + i)) T(first ? first[i] : fill);
    }
    ~array_cell() { shared_segment::instance().deallocate(elements); }
    array_cell(const array_cell&) = delete;
    array_cell& operator=(const array_cell&) = delete;

    static std::size_t bytes_for(std::size_t count) {
        if (count > std::numeric_limits<std::size_t>::max() / sizeof(T))
            throw std::length_error("mpp::Array: " + std::to_string(count) + " elements do not fit in memory");
        return count * sizeof(T);
    }

    const std::size_t size;
    T* const elements;
};

/// Takes `lock` for an internal read. A dead previous holder may have left the data torn, so
/// the lock is released and BrokenLock reported (once: the next taker finds the lock healthy).
class reading_guard {
public:
    explicit reading_guard(const RLock& lock, const char* who) : lock_(lock) {
        try {
            lock_.lock();
        } catch (const BrokenLock&) {
            lock_.unlock();
            throw BrokenLock(std::string(who) + ": a process died holding the lock; the data may be half-written");
        }
    }
    ~reading_guard() { lock_.unlock(); }
    reading_guard(const reading_guard&) = delete;
    reading_guard& operator=(const reading_guard&) = delete;

private:
    const RLock& lock_;
};

/// Takes `lock` for an internal write that overwrites the whole datum, which repairs whatever a
/// dead previous holder left half-written; so BrokenLock is absorbed here.
class writing_guard {
public:
    explicit writing_guard(const RLock& lock) : lock_(lock) {
        try {
            lock_.lock();
        } catch (const BrokenLock&) {
            // We hold the lock now; the write about to happen makes the datum whole again.
        }
    }
    ~writing_guard() { lock_.unlock(); }
    writing_guard(const writing_guard&) = delete;
    writing_guard& operator=(const writing_guard&) = delete;

private:
    const RLock& lock_;
};

}  // namespace detail

/// One T in shared memory with its RLock, like Python's multiprocessing.Value.
/// Handles are cheap copies of the same value, valid in every process of the tree.
template <class T>
class Value {
    static_assert(std::is_trivially_copyable_v<T> && !std::is_const_v<T> && !std::is_volatile_v<T>,
                  "mpp::Value<T> needs a trivially copyable, non-const T: it lives as raw bytes in shared memory "
                  "(send other types through a Queue or Pipe)");

public:
    explicit Value(T init = T{}) : cell_(detail::shared_ref<detail::value_cell<T>>::make(init)) {}
    Value(const Value&) = default;  // a copy is the same shared value; no move, so never empty
    Value& operator=(const Value&) = default;

    /// The value, read under the lock (BrokenLock if a writer died holding it; the lock is released).
    T load() const {
        detail::reading_guard guard(lock_, "mpp::Value::load");
        return cell_->value;
    }
    /// Writes the value under the lock.
    void store(T value) const {
        detail::writing_guard guard(lock_);
        cell_->value = value;
    }
    operator T() const { return load(); }
    /// Stores `value` (rebinding is the copy assignment from another Value).
    Value& operator=(T value) {
        store(value);
        return *this;
    }
    /// The same through a const handle (a lambda's by-copy capture), since a handle is like a pointer.
    const Value& operator=(T value) const {
        store(value);
        return *this;
    }

    /// The lock guarding this value: hold it for compound updates such as `v = v + 1`.
    RLock& get_lock() const noexcept { return lock_; }

    friend bool operator==(const Value& a, const Value& b) noexcept { return a.cell_ == b.cell_; }

private:
    friend struct codec<Value>;
    Value(detail::shared_ref<detail::value_cell<T>> cell, RLock lock) : cell_(std::move(cell)), lock_(std::move(lock)) {}

    detail::shared_ref<detail::value_cell<T>> cell_;
    mutable RLock lock_;  // a handle: get_lock() hands out a reference through const members
};

/// A fixed-size array of T in shared memory with its RLock, like Python's multiprocessing.Array.
/// Element access is in place and unlocked (operator[] is unchecked like std::vector's; at() is
/// checked); load(i)/store(i, v) lock; hold get_lock() for anything that must be consistent.
template <class T>
class Array {
    static_assert(std::is_trivially_copyable_v<T> && !std::is_const_v<T> && !std::is_volatile_v<T>,
                  "mpp::Array<T> needs a trivially copyable, non-const T: it lives as raw bytes in shared memory "
                  "(send other types through a Queue or Pipe)");

public:
    /// n copies of `init`. std::length_error if n * sizeof(T) overflows, std::bad_alloc if the
    /// shared segment is full.
    explicit Array(std::size_t n, T init = T{}) : cell_(detail::shared_ref<detail::array_cell<T>>::make(n, nullptr, init)) {}

    /// The elements of a range, like Python's Array('i', range(10)).
    template <std::ranges::input_range Range>
        requires(!std::same_as<std::remove_cvref_t<Range>, Array>) &&
                std::convertible_to<std::ranges::range_reference_t<Range>, T>
    explicit Array(Range&& values) : Array(from_elements{}, collect(std::forward<Range>(values))) {}

    Array(const Array&) = default;  // a copy is the same shared array; no move, so never empty
    Array& operator=(const Array&) = default;

    std::size_t size() const noexcept { return cell_->size; }
    bool empty() const noexcept { return cell_->size == 0; }

    /// Unchecked, unlocked access to element i (i < size(), as with std::vector).
    T& operator[](std::size_t i) const noexcept { return cell_->elements[i]; }
    /// Checked, unlocked access: std::out_of_range if i >= size().
    T& at(std::size_t i) const {
        check(i, "at");
        return cell_->elements[i];
    }
    /// Element i read under the lock; std::out_of_range if i >= size().
    T load(std::size_t i) const {
        check(i, "load");
        detail::reading_guard guard(lock_, "mpp::Array::load");
        return cell_->elements[i];
    }
    /// Element i written under the lock; std::out_of_range if i >= size().
    void store(std::size_t i, T value) const {
        check(i, "store");
        detail::writing_guard guard(lock_);
        cell_->elements[i] = value;
    }

    std::span<T> span() const noexcept { return {cell_->elements, cell_->size}; }
    T* data() const noexcept { return cell_->elements; }
    T* begin() const noexcept { return cell_->elements; }
    T* end() const noexcept { return cell_->elements + cell_->size; }

    RLock& get_lock() const noexcept { return lock_; }

    friend bool operator==(const Array& a, const Array& b) noexcept { return a.cell_ == b.cell_; }

private:
    friend struct codec<Array>;
    Array(detail::shared_ref<detail::array_cell<T>> cell, RLock lock) : cell_(std::move(cell)), lock_(std::move(lock)) {}
    struct from_elements {};
    Array(from_elements, const std::vector<T>& values)
        : cell_(detail::shared_ref<detail::array_cell<T>>::make(values.size(), values.data(), T{})) {}

    template <class Range>
    static std::vector<T> collect(Range&& values) {
        std::vector<T> collected;
        for (auto&& value : values) collected.push_back(static_cast<T>(value));
        return collected;
    }

    void check(std::size_t i, const char* operation) const {
        if (i >= cell_->size)
            throw std::out_of_range("mpp::Array::" + std::string(operation) + ": index " + std::to_string(i) +
                                    " is out of range for an array of size " + std::to_string(cell_->size));
    }

    detail::shared_ref<detail::array_cell<T>> cell_;
    mutable RLock lock_;
};

template <class T>
struct codec<Value<T>> {
    static void save(writer& out, const Value<T>& value) {
        detail::save_offset(out, value.cell_.export_reference());
        codec<RLock>::save(out, value.lock_);
    }
    static Value<T> load(reader& in) {
        auto cell = detail::load_shared_ref<detail::value_cell<T>>(in, "Value");
        return Value<T>(std::move(cell), codec<RLock>::load(in));
    }
};

template <class T>
struct codec<Array<T>> {
    static void save(writer& out, const Array<T>& array) {
        detail::save_offset(out, array.cell_.export_reference());
        codec<RLock>::save(out, array.lock_);
    }
    static Array<T> load(reader& in) {
        auto cell = detail::load_shared_ref<detail::array_cell<T>>(in, "Array");
        return Array<T>(std::move(cell), codec<RLock>::load(in));
    }
};

}  // namespace mpp
