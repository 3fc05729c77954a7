// Python (the multiprocessing docs' Pipe example, then a ping-pong over the same duplex pipe):
//
//   from multiprocessing import Process, Pipe
//
//   def f(conn):
//       conn.send([42, None, 'hello'])
//       while (n := conn.recv()) is not None:   # echo each number doubled until None
//           conn.send(n * 2)
//       conn.close()
//
//   if __name__ == '__main__':
//       parent_conn, child_conn = Pipe()
//       p = Process(target=f, args=(child_conn,))
//       p.start()
//       print(parent_conn.recv())   # prints "[42, None, 'hello']"
//       for n in range(5):
//           parent_conn.send(n); print(parent_conn.recv())
//       parent_conn.send(None)
//       p.join()
//
// A C++ pipe carries one type; a std::variant lets it carry Python's mixed messages.
#include <mpp/pipe.hpp>
#include <mpp/process.hpp>

#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <tuple>
#include <variant>

using greeting = std::tuple<int, std::optional<int>, std::string>;  // [42, None, 'hello']
using message = std::variant<std::monostate, greeting, long>;        // monostate plays None

static void f(mpp::Connection<message> conn) {
    conn.send(greeting{42, std::nullopt, "hello"});
    for (;;) {
        message m = conn.recv();
        if (std::holds_alternative<std::monostate>(m)) break;
        conn.send(std::get<long>(m) * 2);
    }
    conn.close();
}

int main(int argc, char** argv) {
    const bool smoke = argc > 1 && std::strcmp(argv[1], "--smoke") == 0;
    const long rounds = smoke ? 1000 : 100000;

    auto [parent_conn, child_conn] = mpp::Pipe<message>();
    mpp::Process p(f, child_conn);
    p.start();

    auto [number, nothing, word] = std::get<greeting>(parent_conn.recv());
    std::printf("[%d, %s, '%s']\n", number, nothing ? "?" : "None", word.c_str());
    bool right = number == 42 && !nothing && word == "hello";

    for (long n = 0; n < rounds; ++n) {
        parent_conn.send(n);
        right = right && std::get<long>(parent_conn.recv()) == n * 2;
    }
    parent_conn.send(std::monostate{});
    p.join();
    std::printf("%ld round trips, every answer doubled: %s\n", rounds, right ? "yes" : "NO");
    return right && p.exitcode() == 0 ? 0 : 1;
}
