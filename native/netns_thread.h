// Runs a piece of native work inside another network namespace on a short-lived helper
// thread: the thread joins the namespace with setns(CLONE_NEWNET), does the work and
// exits, so no other thread (the JavaScript thread above all) ever changes namespace.
// A socket keeps the namespace it was created in, and /proc/thread-self/net and
// /proc/sys/net show the namespace of the thread that opens them, so both sockets and
// namespace-local files can be reached this way.
#pragma once

#include <napi.h>
#include <functional>
#include <string>

namespace conntrack {

class NetnsThread {
 public:
  // Reads { netns?: string, netnsFd?: number } from `options` (an object or undefined).
  // `netns` is a namespace file path (/proc/PID/ns/net, /var/run/netns/NAME); `netnsFd` an
  // open descriptor of one (or a pidfd), which is duplicated here, so the caller may
  // close its own at once. Throws TypeError for a wrong type or a path with a NUL byte,
  // and an errno Error (EBADF) for a descriptor that is not open.
  static NetnsThread FromOptions(Napi::Env env, Napi::Value options);

  NetnsThread() = default;
  NetnsThread(NetnsThread&& other) noexcept;
  NetnsThread& operator=(NetnsThread&& other) noexcept;
  NetnsThread(const NetnsThread&) = delete;
  NetnsThread& operator=(const NetnsThread&) = delete;
  ~NetnsThread();

  // True when a namespace was named (else Run() works in the caller's namespace).
  bool named() const { return !path_.empty() || fd_ >= 0; }
  // Runs `work` on a new thread inside the namespace (any thread may call this; it waits
  // for the helper thread). Returns false, with errno() and syscall() set, when the
  // namespace could not be opened or joined or the thread could not be started; `work`
  // then did not run. std::bad_alloc thrown by `work` is reported as ENOMEM.
  bool Run(const std::function<void()>& work);
  int error() const { return err_; }
  const char* syscall() const { return syscall_; }
  // The JS Error for a failed Run(): names the namespace and what to do about it.
  Napi::Error MakeError(Napi::Env env) const;
  // "network namespace /proc/42/ns/net" or "network namespace fd 7".
  std::string Describe() const;

 private:
  bool OpenTarget(int* fd);

  std::string path_;
  int fd_ = -1;        // our duplicate of the caller's fd
  int caller_fd_ = -1; // the number the caller passed, for messages
  int err_ = 0;
  const char* syscall_ = nullptr;
};

}  // namespace conntrack
