// Values to message bytes and back for queues and pipes, through binary_serializer.
// Encoding reuses one writer per thread, so a small put allocates nothing; decoding
// demands that the message is used to its last byte (SerializationError otherwise).
#pragma once

#include <cstddef>
#include <optional>
#include <span>

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

/// Decodes one whole message.
template <class T>
T decode_message(std::span<const std::byte> bytes) {
    reader in(bytes);
    T value = binary_serializer::load<T>(in);
    in.expect_end();
    return value;
}

}  // namespace mpp::detail
