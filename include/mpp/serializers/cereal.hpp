// mpp::cereal_serializer: a Serializer that encodes with cereal (https://uscilab.github.io/cereal),
// so basic_pool<cereal_serializer> ships any type cereal can save and load.
// Decoding bad bytes throws mpp::SerializationError, never reads out of bounds, and never sizes a
// container beyond what the remaining input could hold.
#pragma once

#if !__has_include(<cereal/cereal.hpp>)
#error "mpp/serializers/cereal.hpp needs the cereal headers (Debian: apt-get install libcereal-dev)"
#endif

#include <mpp/errors.hpp>
#include <mpp/serializer.hpp>

#include <cereal/cereal.hpp>
#include <cereal/types/array.hpp>
#include <cereal/types/bitset.hpp>
#include <cereal/types/chrono.hpp>
#include <cereal/types/complex.hpp>
#include <cereal/types/deque.hpp>
#include <cereal/types/list.hpp>
#include <cereal/types/map.hpp>
#include <cereal/types/memory.hpp>
#include <cereal/types/optional.hpp>
#include <cereal/types/set.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/tuple.hpp>
#include <cereal/types/unordered_map.hpp>
#include <cereal/types/unordered_set.hpp>
#include <cereal/types/utility.hpp>
#include <cereal/types/variant.hpp>
#include <cereal/types/vector.hpp>

#include <cstddef>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace mpp::detail {

// cereal's own BinaryOutputArchive/BinaryInputArchive talk to std::streams and trust every length
// they read. These two speak the same byte format (raw little-endian values, 64-bit sizes) but
// write straight into an mpp::writer and read from an mpp::reader, so a message needs no extra
// copy or length prefix, and a container size is checked against the bytes left before cereal
// allocates for it.
class cereal_output_archive : public cereal::OutputArchive<cereal_output_archive, cereal::AllowEmptyClassElision> {
public:
    explicit cereal_output_archive(writer& out)
        : cereal::OutputArchive<cereal_output_archive, cereal::AllowEmptyClassElision>(this), out_(out) {}
    void saveBinary(const void* data, std::size_t size) { out_.write(data, size); }
    writer& target() noexcept { return out_; }

private:
    writer& out_;
};

class cereal_input_archive : public cereal::InputArchive<cereal_input_archive, cereal::AllowEmptyClassElision> {
public:
    explicit cereal_input_archive(reader& in)
        : cereal::InputArchive<cereal_input_archive, cereal::AllowEmptyClassElision>(this), in_(in) {}
    void loadBinary(void* data, std::size_t size) {
        auto bytes = in_.read(size);  // SerializationError on a short read
        if (size != 0) std::memcpy(data, bytes.data(), size);
    }
    reader& source() noexcept { return in_; }

private:
    reader& in_;
};

template <class T>
    requires std::is_arithmetic_v<T>
void CEREAL_SAVE_FUNCTION_NAME(cereal_output_archive& ar, const T& value) {
    ar.saveBinary(std::addressof(value), sizeof(value));
}
template <class T>
    requires std::is_arithmetic_v<T>
void CEREAL_LOAD_FUNCTION_NAME(cereal_input_archive& ar, T& value) {
    if constexpr (std::is_same_v<T, bool>) {
        // Any byte but 0 or 1 in a bool would be undefined behaviour once read: refuse it.
        unsigned char byte = 0;
        ar.loadBinary(&byte, 1);
        if (byte > 1) throw SerializationError("mpp::cereal_serializer: invalid bool byte " + std::to_string(byte));
        value = byte == 1;
    } else {
        ar.loadBinary(std::addressof(value), sizeof(value));
    }
}

template <class T>
void CEREAL_SAVE_FUNCTION_NAME(cereal_output_archive& ar, const cereal::BinaryData<T>& data) {
    ar.saveBinary(data.data, static_cast<std::size_t>(data.size));
}
template <class T>
void CEREAL_LOAD_FUNCTION_NAME(cereal_input_archive& ar, cereal::BinaryData<T>& data) {
    ar.loadBinary(data.data, static_cast<std::size_t>(data.size));
}

// Names mean nothing in a binary format: only the value is written.
template <class T>
void CEREAL_SAVE_FUNCTION_NAME(cereal_output_archive& ar, const cereal::NameValuePair<T>& pair) {
    ar(pair.value);
}
template <class T>
void CEREAL_LOAD_FUNCTION_NAME(cereal_input_archive& ar, cereal::NameValuePair<T>& pair) {
    ar(pair.value);
}

template <class T>
void CEREAL_SAVE_FUNCTION_NAME(cereal_output_archive& ar, const cereal::SizeTag<T>& tag) {
    ar(tag.size);
}
// Every element of a container costs at least one byte of input (cereal elides only empty
// classes, which nobody ships by the billion), so a size above the bytes left is corrupt: refusing
// it here is what keeps a flipped bit from turning into a multi-gigabyte resize().
template <class T>
void CEREAL_LOAD_FUNCTION_NAME(cereal_input_archive& ar, cereal::SizeTag<T>& tag) {
    ar(tag.size);
    if (static_cast<std::size_t>(tag.size) > ar.source().remaining()) {
        throw SerializationError("mpp::cereal_serializer: a container claims " + std::to_string(tag.size) +
                                 " elements but only " + std::to_string(ar.source().remaining()) +
                                 " bytes are left");
    }
}

// mpp's handle types (Queue, Value, locks...) and user types with an mpp::codec specialization
// keep their mpp encoding also when nested inside a cereal-encoded container.
template <class T>
    requires has_codec<T> && (!cereal::traits::has_member_serialize<T, cereal_output_archive>::value) &&
             (!cereal::traits::has_member_save<T, cereal_output_archive>::value)
void CEREAL_SAVE_FUNCTION_NAME(cereal_output_archive& ar, const T& value) {
    codec<T>::save(ar.target(), value);
}
template <class T>
    requires has_codec<T> && (!cereal::traits::has_member_serialize<T, cereal_input_archive>::value) &&
             (!cereal::traits::has_member_load<T, cereal_input_archive>::value)
void CEREAL_LOAD_FUNCTION_NAME(cereal_input_archive& ar, T& value) {
    value = codec<T>::load(ar.source());
}

}  // namespace mpp::detail

CEREAL_REGISTER_ARCHIVE(mpp::detail::cereal_output_archive)
CEREAL_REGISTER_ARCHIVE(mpp::detail::cereal_input_archive)
CEREAL_SETUP_ARCHIVE_TRAITS(mpp::detail::cereal_input_archive, mpp::detail::cereal_output_archive)

namespace mpp {

/// True when cereal can both save and load T (through a serialize/save/load function of T's or one of
/// the std types whose cereal/types/ header this file includes).
template <class T>
concept cereal_serializable = cereal::traits::is_output_serializable<T, detail::cereal_output_archive>::value &&
                              cereal::traits::is_input_serializable<T, detail::cereal_input_archive>::value;

/// A Serializer for basic_pool<cereal_serializer>, dumps<cereal_serializer> and loads<T, cereal_serializer>.
/// The bytes are cereal's binary archive format; cereal's errors surface as mpp::SerializationError.
struct cereal_serializer {
    template <class T>
    static void save(writer& out, const T& value) {
        static_assert(cereal_serializable<T>,
                      "mpp::cereal_serializer cannot encode this type: give it a cereal `template <class Archive> void "
                      "serialize(Archive&)` (or save/load), or include the cereal/types/ header for it");
        if constexpr (cereal_serializable<T>) {
            detail::cereal_output_archive archive(out);
            try {
                archive(value);
            } catch (const cereal::Exception& error) {
                throw SerializationError(std::string("mpp::cereal_serializer: ") + error.what());
            }
        }
    }

    template <class T>
    static T load(reader& in) {
        static_assert(cereal_serializable<T>,
                      "mpp::cereal_serializer cannot decode this type: give it a cereal `template <class Archive> void "
                      "serialize(Archive&)` (or save/load), or include the cereal/types/ header for it");
        static_assert(std::is_default_constructible_v<T>,
                      "mpp::cereal_serializer decodes into a default-constructed T: give T a default constructor");
        T value{};
        if constexpr (cereal_serializable<T>) {
            detail::cereal_input_archive archive(in);
            try {
                archive(value);
            } catch (const cereal::Exception& error) {
                throw SerializationError(std::string("mpp::cereal_serializer: ") + error.what());
            } catch (const std::length_error& error) {
                throw SerializationError(std::string("mpp::cereal_serializer: impossible length: ") + error.what());
            }
        }
        return value;
    }
};

}  // namespace mpp
