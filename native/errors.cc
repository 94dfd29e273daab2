#include "errors.h"

#include <string.h>

namespace conntrack {

Napi::Error ErrnoError(Napi::Env env, const std::string& message, const char* syscall, int err) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, syscall));
  return e;
}

Napi::Error ErrnoError(Napi::Env env, const char* syscall, int err) {
  return ErrnoError(env, std::string(syscall) + ": " + strerror(err), syscall, err);
}

void ThrowErrno(Napi::Env env, const char* syscall, int err) {
  throw ErrnoError(env, syscall, err);
}

}  // namespace conntrack
