// A first-in first-out queue that keeps its storage. std::deque allocates a
// node every few pushes and frees one every few pops, so a queue that is filled
// and drained without end (a worker's sent chunks, the jobs ready to send, the
// results waiting for an imap consumer) mallocs for ever. This one is a ring
// that doubles when full and never shrinks: at a steady depth it allocates nothing.
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <utility>

#include <boost/circular_buffer.hpp>

namespace mpp::detail {

template <class T, class Allocator = std::allocator<T>>
class reusable_queue {
public:
    // `value` must not be an element of this queue: growing moves them.
    template <class U>
    void push_back(U&& value) {
        make_room();
        items_.push_back(std::forward<U>(value));
    }
    template <class U>
    void push_front(U&& value) {
        make_room();
        items_.push_front(std::forward<U>(value));
    }
    void pop_front() { items_.pop_front(); }
    T& front() { return items_.front(); }
    const T& front() const { return items_.front(); }
    T& operator[](std::size_t i) { return items_[i]; }
    const T& operator[](std::size_t i) const { return items_[i]; }
    std::size_t size() const noexcept { return items_.size(); }
    bool empty() const noexcept { return items_.empty(); }
    void clear() noexcept { items_.clear(); }
    auto begin() { return items_.begin(); }
    auto end() { return items_.end(); }
    auto begin() const { return items_.begin(); }
    auto end() const { return items_.end(); }

private:
    void make_room() {
        if (items_.full()) items_.set_capacity(std::max<std::size_t>(8, 2 * items_.capacity()));
    }

    boost::circular_buffer<T, Allocator> items_ = boost::circular_buffer<T, Allocator>();
};

}  // namespace mpp::detail
