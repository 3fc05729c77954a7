// How a handle to a shared object (Queue, Connection, ...) travels inside a message: a
// kind tag and the object's segment offset, carrying one reference of its own, so the
// object outlives the sender's handles until the message is decoded (exactly once).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "mpp/detail/shared_ref.hpp"
#include "mpp/errors.hpp"
#include "mpp/serializer.hpp"

namespace mpp::detail {

template <class Shared>
void save_shared_handle(writer& out, std::uint32_t kind, const shared_ref<Shared>& handle) {
    if (!handle) throw SerializationError("mpp: cannot encode an empty handle");
    binary_serializer::save(out, kind);
    binary_serializer::save(out, handle.export_reference());
}

template <class Shared>
shared_ref<Shared> load_shared_handle(reader& in, std::uint32_t kind, const char* type_name) {
    if (binary_serializer::load<std::uint32_t>(in) != kind)
        throw SerializationError(std::string("mpp: corrupt input: these bytes do not hold a ") + type_name);
    const auto offset = binary_serializer::load<std::uint64_t>(in);
    try {
        (void)shared_segment::instance().at(offset);
    } catch (const std::out_of_range&) {
        throw SerializationError(std::string("mpp: corrupt input: a ") + type_name + " outside the shared segment");
    }
    return shared_ref<Shared>::adopt_reference(offset);
}

}  // namespace mpp::detail
