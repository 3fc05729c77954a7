// Python (the multiprocessing docs' shared-memory example):
//
//   from multiprocessing import Process, Value, Array
//
//   def f(n, a):
//       n.value = 3.1415927
//       for i in range(len(a)):
//           a[i] = -a[i]
//
//   if __name__ == '__main__':
//       num = Value('d', 0.0)
//       arr = Array('i', range(10))
//       p = Process(target=f, args=(num, arr))
//       p.start()
//       p.join()
//       print(num.value)    # 3.1415927
//       print(arr[:])       # [0, -1, -2, ..., -9]
#include <mpp/process.hpp>
#include <mpp/shared.hpp>

#include <cstdio>

static void f(mpp::Value<double> n, mpp::Array<int> a) {
    n = 3.1415927;
    for (std::size_t i = 0; i < a.size(); ++i) a[i] = -a[i];
}

int main() {  // --smoke changes nothing: the whole program takes milliseconds
    mpp::Value<double> num(0.0);
    mpp::Array<int> arr(10);
    for (std::size_t i = 0; i < arr.size(); ++i) arr[i] = static_cast<int>(i);

    mpp::Process p(f, num, arr);
    p.start();
    p.join();

    std::printf("%.7f\n[", num.load());
    bool right = num.load() == 3.1415927;
    for (std::size_t i = 0; i < arr.size(); ++i) {
        std::printf("%s%d", i ? ", " : "", arr[i]);
        right = right && arr[i] == -static_cast<int>(i);
    }
    std::printf("]\n");
    return right && p.exitcode() == 0 ? 0 : 1;
}
