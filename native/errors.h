// Errors handed to JavaScript: each carries `errno` and `syscall`, which lib/ maps to a
// ConntrackError.
#pragma once

#include <napi.h>
#include <string>

namespace conntrack {

// A JS Error "<syscall>: <strerror>" carrying errno and the failed syscall.
Napi::Error ErrnoError(Napi::Env env, const char* syscall, int err);
// The same with a message of the caller's choosing.
Napi::Error ErrnoError(Napi::Env env, const std::string& message, const char* syscall, int err);
[[noreturn]] void ThrowErrno(Napi::Env env, const char* syscall, int err);

}  // namespace conntrack
