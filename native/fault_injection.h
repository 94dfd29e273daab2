// Test-only fault injection, driven from JS through the addon's `testing` export: makes
// the Nth allocation point fail with std::bad_alloc, or the Nth send() fail with an errno,
// so the tests can show that these failures fail a call or a socket instead of aborting.
// Both counters are off (0) unless a test arms them.
#pragma once

#include <atomic>
#include <new>

namespace conntrack {

class FaultInjection {
 public:
  // Arms: the `after`-th next allocation point (1 = the very next) throws std::bad_alloc.
  static void FailAllocation(int after) { alloc_countdown_.store(after); }
  // Arms: the `after`-th next send() (1 = the very next) fails with `err`.
  static void FailSend(int after, int err) {
    send_errno_.store(err);
    send_countdown_.store(after);
  }
  static void Reset() {
    alloc_countdown_.store(0);
    send_countdown_.store(0);
  }
  // Called before each allocation the native code can recover from.
  static void AllocationPoint() {
    if (alloc_countdown_.load(std::memory_order_relaxed) > 0 && alloc_countdown_.fetch_sub(1) == 1)
      throw std::bad_alloc();
  }
  // Called before each send(); returns the errno to fail it with, or 0.
  static int SendPoint() {
    if (send_countdown_.load(std::memory_order_relaxed) > 0 && send_countdown_.fetch_sub(1) == 1)
      return send_errno_.load();
    return 0;
  }

 private:
  static inline std::atomic<int> alloc_countdown_{0};
  static inline std::atomic<int> send_countdown_{0};
  static inline std::atomic<int> send_errno_{0};
};

}  // namespace conntrack
