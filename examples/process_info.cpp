// Python (the multiprocessing docs' first Process example):
//
//   from multiprocessing import Process
//   import os
//
//   def info(title):
//       print(title)
//       print('parent process:', os.getppid())
//       print('process id:', os.getpid())
//
//   def f(name):
//       info('function f')
//       print('hello', name)
//
//   if __name__ == '__main__':
//       info('main line')
//       p = Process(target=f, args=('bob',))
//       p.start()
//       p.join()
//
// The C++ child also checks that its parent is the process that started it: a wrong answer
// throws, which (as in Python) prints the message and gives the child exit code 1.
#include <mpp/process.hpp>

#include <unistd.h>

#include <cstdio>
#include <stdexcept>
#include <string>

static void info(const char* title) {
    std::printf("%s\n  parent process: %d\n  process id: %d\n", title, static_cast<int>(::getppid()),
                static_cast<int>(::getpid()));
    std::fflush(stdout);
}

static void f(const std::string& name, pid_t expected_parent) {
    info("function f");
    std::printf("  hello %s (I am %s)\n", name.c_str(), mpp::current_process().name.c_str());
    if (::getppid() != expected_parent) throw std::runtime_error("the child's parent is not the process that started it");
}

int main() {  // --smoke changes nothing: the whole program takes milliseconds
    info("main line");
    mpp::Process p(f, std::string("bob"), ::getpid());
    p.start();
    const pid_t child = p.pid();
    p.join();
    std::printf("child %d exited with code %d\n", static_cast<int>(child), p.exitcode().value_or(-999));
    return child > 0 && child != ::getpid() && p.exitcode() == 0 ? 0 : 1;
}
