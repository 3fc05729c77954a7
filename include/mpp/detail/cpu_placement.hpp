// Which CPU a thread runs on, and how a worker leaves the CPU of a caller that
// waits for it. Two threads taking turns on one CPU pay a context switch at
// every turn (5 us each on a small VM), where on two CPUs they would hand over
// through the cache in well under one. Linux does not always spread them: when
// it knows of no cache the CPUs share (as on VMs that show no cache topology),
// it wakes a thread on its waker's CPU or on its own last one, never looking for
// an idle third.
#pragma once

#include <sched.h>

namespace mpp::detail {

/// The CPU the calling thread runs on now, -1 if unknown. A hint: it may move
/// at any moment.
inline int current_cpu() noexcept { return ::sched_getcpu(); }

/// Moves the calling thread from `cpu` to another CPU it is allowed on, and
/// leaves its allowed set as it was: true once it runs elsewhere. Linux wakes a
/// thread on the CPU it last ran on while that one idles, so it tends to stay
/// there. False, and nothing changed, when `cpu` is the only one it may use.
inline bool step_off_cpu(int cpu) noexcept {
    cpu_set_t allowed;
    if (cpu < 0 || cpu >= CPU_SETSIZE || ::sched_getaffinity(0, sizeof allowed, &allowed) != 0) return false;
    if (!CPU_ISSET(cpu, &allowed) || CPU_COUNT(&allowed) < 2) return false;
    cpu_set_t elsewhere = allowed;
    CPU_CLR(cpu, &elsewhere);
    // The kernel migrates a thread whose CPU leaves its set before the call returns.
    if (::sched_setaffinity(0, sizeof elsewhere, &elsewhere) != 0) return false;
    (void)::sched_setaffinity(0, sizeof allowed, &allowed);  // a superset of the one just set: cannot fail
    return true;
}

}  // namespace mpp::detail
