// Values to message bytes and back for queues and pipes, through binary_serializer.
// Encoding reuses one writer per thread (or none, for types that are their own bytes), so
// a small put allocates nothing; decoding demands that the message is used to its last
// byte (SerializationError otherwise).
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "mpp/serializer.hpp"

namespace mpp::detail {

/// A writer to encode one message into: this thread's reusable one when it is free,
/// a fresh one when a codec encodes a message while another is being encoded.
class message_scratch {
public:
    message_scratch() {
        auto& shared = thread_scratch();
        if (!shared.busy) {
            shared.busy = true;
            borrowed_ = &shared;
            out_ = &shared.out;
            out_->clear();
        } else {
            own_.emplace();
            out_ = &*own_;
        }
    }
    ~message_scratch() {
        if (borrowed_ == nullptr) return;
        // Do not keep a huge buffer alive in every thread that once sent a big message.
        if (borrowed_->out.size() > retained_bytes) borrowed_->out = writer{};
        borrowed_->busy = false;
    }
    message_scratch(const message_scratch&) = delete;
    message_scratch& operator=(const message_scratch&) = delete;

    writer& out() noexcept { return *out_; }

private:
    static constexpr std::size_t retained_bytes = std::size_t{1} << 20;
    struct per_thread {
        writer out;
        bool busy = false;
    };
    static per_thread& thread_scratch() {
        thread_local per_thread scratch;
        return scratch;
    }

    per_thread* borrowed_ = nullptr;
    writer* out_ = nullptr;
    std::optional<writer> own_;
};

inline constexpr std::size_t max_reserved_hint = std::size_t{1} << 40;

/// Calls send(std::span<const std::byte>) with the encoding of `value` and returns what it
/// returns. Types whose encoding is their object bytes (numbers, plain structs) skip the
/// writer altogether: the cheapest path for the most common messages.
template <class T, class Send>
decltype(auto) with_encoded_message(const T& value, Send&& send) {
    if constexpr (bitwise<T>()) {
        return send(std::as_bytes(std::span<const T, 1>(std::addressof(value), 1)));
    } else {
        message_scratch scratch;
        // As dumps() does: flat types get their exact size at once (and GCC 12's bogus
        // -Wstringop-overflow on the first insert into an empty vector stays quiet).
        // (The hint is only trusted when plausible: "unknown" is spelled as a huge value.)
        const std::size_t hint = binary_size_hint(value);
        scratch.out().reserve(hint <= max_reserved_hint ? hint : 64);
        binary_serializer::save(scratch.out(), value);
        return send(scratch.out().bytes());
    }
}

/// Decodes one whole message.
template <class T>
T decode_message(std::span<const std::byte> bytes) {
    if constexpr (bitwise<T>()) {
        if (bytes.size() != sizeof(T))
            throw SerializationError("mpp: a message of " + std::to_string(bytes.size()) + " bytes cannot hold a " +
                                     std::to_string(sizeof(T)) + "-byte value");
        T value;
        std::memcpy(static_cast<void*>(std::addressof(value)), bytes.data(), sizeof(T));
        return value;
    }
    reader in(bytes);
    T value = binary_serializer::load<T>(in);
    in.expect_end();
    return value;
}

}  // namespace mpp::detail
