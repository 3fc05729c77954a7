// Tests for mpp/errors.hpp: the exception hierarchy, WorkerLost and RemoteError accessors, and the
// registry that rebuilds a task's exception in the parent as its own type.
#include <mpp/errors.hpp>

#include <catch2/catch.hpp>

#include <csignal>
#include <stdexcept>
#include <string>

namespace user_space {
struct quota_exceeded : std::runtime_error {  // registered in a test below
    explicit quota_exceeded(const std::string& what) : std::runtime_error(what) {}
};
struct never_registered : std::logic_error {
    explicit never_registered(const std::string& what) : std::logic_error(what) {}
};
}  // namespace user_space

namespace {

// Rethrows what the registry built for (typeid(E).name(), what) so tests can catch it by type.
template <class E>
[[noreturn]] void rethrow_rebuilt(const std::string& what) {
    std::rethrow_exception(mpp::detail::exception_registry::instance().rebuild(typeid(E).name(), what));
}

template <class E>
void check_rebuilt_as_itself(const std::string& what) {
    try {
        rethrow_rebuilt<E>(what);
    } catch (const E& error) {
        CHECK(typeid(error) == typeid(E));  // exactly E, not merely something derived from it
        CHECK(std::string(error.what()) == what);
        return;
    } catch (...) {
        FAIL("rebuilt as a different type");
    }
}

}  // namespace

TEMPLATE_TEST_CASE("every mpp exception is an mpp::Error and a std::runtime_error", "[errors]", mpp::TimeoutError,
                   mpp::TaskTimeout, mpp::PoolTerminated, mpp::SerializationError, mpp::Empty, mpp::Full,
                   mpp::EOFError, mpp::BrokenLock, mpp::BrokenBarrier) {
    STATIC_REQUIRE(std::is_base_of_v<mpp::Error, TestType>);
    STATIC_REQUIRE(std::is_base_of_v<std::runtime_error, TestType>);
    try {
        throw TestType("what happened");
    } catch (const mpp::Error& error) {
        CHECK(std::string(error.what()) == "what happened");
    }
}

TEST_CASE("WorkerLost and RemoteError are mpp::Errors too", "[errors]") {
    STATIC_REQUIRE(std::is_base_of_v<mpp::Error, mpp::WorkerLost>);
    STATIC_REQUIRE(std::is_base_of_v<mpp::Error, mpp::RemoteError>);
    STATIC_REQUIRE(std::is_base_of_v<std::runtime_error, mpp::Error>);
    CHECK_THROWS_AS(throw mpp::WorkerLost(1, SIGKILL, 0), std::runtime_error);
    CHECK_THROWS_AS(throw mpp::RemoteError("x", "y"), mpp::Error);
    CHECK(std::string(mpp::PoolTerminated().what()).find("terminated") != std::string::npos);
}

TEST_CASE("WorkerLost reports the pid, the signal and the exit code", "[errors]") {
    const mpp::WorkerLost killed(4242, SIGKILL, 0);
    CHECK(killed.pid() == 4242);
    CHECK(killed.signal() == SIGKILL);
    CHECK(killed.exit_code() == 0);
    CHECK_THAT(killed.what(), Catch::Contains("4242") && Catch::Contains("signal 9"));

    const mpp::WorkerLost exited(17, 0, 3);
    CHECK(exited.signal() == 0);
    CHECK(exited.exit_code() == 3);
    CHECK_THAT(exited.what(), Catch::Contains("exit code 3"));

    const mpp::WorkerLost custom("worker vanished", 5, 11, 0);
    CHECK(std::string(custom.what()) == "worker vanished");
    CHECK(custom.pid() == 5);
    CHECK(custom.signal() == 11);
}

TEST_CASE("RemoteError carries the original type name and message", "[errors]") {
    const mpp::RemoteError error("my::failure", "disk on fire");
    CHECK(error.type_name() == "my::failure");
    CHECK(std::string(error.what()) == "disk on fire");
}

TEST_CASE("standard exception types are rebuilt as themselves with their message", "[errors]") {
    check_rebuilt_as_itself<std::runtime_error>("runtime");
    check_rebuilt_as_itself<std::logic_error>("logic");
    check_rebuilt_as_itself<std::invalid_argument>("invalid");
    check_rebuilt_as_itself<std::out_of_range>("range");
    check_rebuilt_as_itself<std::domain_error>("domain");
    check_rebuilt_as_itself<std::length_error>("length");
    check_rebuilt_as_itself<std::range_error>("range error");
    check_rebuilt_as_itself<std::overflow_error>("overflow");
    check_rebuilt_as_itself<std::underflow_error>("underflow");
    CHECK_THROWS_AS(rethrow_rebuilt<std::bad_alloc>("ignored"), std::bad_alloc);
}

TEST_CASE("mpp's own exception types are rebuilt as themselves", "[errors]") {
    check_rebuilt_as_itself<mpp::Error>("base");
    check_rebuilt_as_itself<mpp::SerializationError>("bad bytes");
    check_rebuilt_as_itself<mpp::TimeoutError>("late");
    check_rebuilt_as_itself<mpp::Empty>("empty");
    check_rebuilt_as_itself<mpp::BrokenLock>("broken");
}

TEST_CASE("a registered user exception is rebuilt as its own type", "[errors]") {
    mpp::register_exception<user_space::quota_exceeded>();
    check_rebuilt_as_itself<user_space::quota_exceeded>("over quota");
    mpp::register_exception<user_space::quota_exceeded>();  // registering twice is harmless
    check_rebuilt_as_itself<user_space::quota_exceeded>("still over quota");
}

TEST_CASE("an unregistered exception arrives as RemoteError with its demangled name", "[errors]") {
    try {
        rethrow_rebuilt<user_space::never_registered>("nobody knows me");
        FAIL("nothing was thrown");
    } catch (const mpp::RemoteError& error) {
        CHECK(error.type_name() == "user_space::never_registered");
        CHECK(std::string(error.what()) == "nobody knows me");
    }
    try {
        std::rethrow_exception(mpp::detail::exception_registry::instance().rebuild("not a mangled name", "m"));
    } catch (const mpp::RemoteError& error) {
        CHECK(error.type_name() == "not a mangled name");  // demangling failed: the raw name is kept
    }
}

TEST_CASE("demangle turns a mangled type name into the C++ spelling", "[errors]") {
    CHECK(mpp::detail::demangle(typeid(std::out_of_range).name()) == "std::out_of_range");
    CHECK(mpp::detail::demangle(typeid(int).name()) == "int");
}
