// Starting a native thread without letting its exceptions reach N-API: the errno of a
// failure (pthread_create's, or ENOMEM), 0 on success.
#pragma once

#include <errno.h>
#include <new>
#include <system_error>
#include <thread>
#include <utility>

namespace conntrack {

template <typename F>
int StartThread(std::thread* thread, F&& body) {
  try {
    *thread = std::thread(std::forward<F>(body));
  } catch (const std::system_error& e) {
    return e.code().value() ? e.code().value() : EAGAIN;
  } catch (const std::bad_alloc&) {
    return ENOMEM;
  }
  return 0;
}

}  // namespace conntrack
