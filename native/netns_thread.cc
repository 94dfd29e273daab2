#include "netns_thread.h"
#include "errors.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <new>
#include <system_error>
#include <thread>

namespace conntrack {

NetnsThread NetnsThread::FromOptions(Napi::Env env, Napi::Value options) {
  NetnsThread t;
  if (!options.IsObject()) return t;
  Napi::Object o = options.As<Napi::Object>();
  Napi::Value path = o.Get("netns");
  Napi::Value fd = o.Get("netnsFd");
  bool has_path = !path.IsUndefined() && !path.IsNull();
  bool has_fd = !fd.IsUndefined() && !fd.IsNull();
  if (has_path && has_fd) throw Napi::TypeError::New(env, "netns and netnsFd: give one, not both");
  if (has_path) {
    if (!path.IsString()) throw Napi::TypeError::New(env, "netns must be a string (a namespace file path)");
    t.path_ = path.As<Napi::String>().Utf8Value();
    if (t.path_.empty()) throw Napi::TypeError::New(env, "netns must not be empty");
    if (t.path_.find('\0') != std::string::npos)
      throw Napi::TypeError::New(env, "netns must not contain a NUL byte (the path would be cut short there)");
  }
  if (has_fd) {
    if (!fd.IsNumber()) throw Napi::TypeError::New(env, "netnsFd must be a number (an open file descriptor)");
    double d = fd.As<Napi::Number>().DoubleValue();
    if (!(d >= 0 && d <= 2147483647.0) || d != static_cast<double>(static_cast<int>(d)))
      throw Napi::TypeError::New(env, "netnsFd must be a non-negative integer file descriptor");
    t.caller_fd_ = static_cast<int>(d);
    t.fd_ = fcntl(t.caller_fd_, F_DUPFD_CLOEXEC, 0);
    if (t.fd_ < 0) {
      t.err_ = errno;
      t.syscall_ = "fcntl(F_DUPFD_CLOEXEC)";
      throw t.MakeError(env);
    }
  }
  return t;
}

NetnsThread::NetnsThread(NetnsThread&& other) noexcept { *this = std::move(other); }

NetnsThread& NetnsThread::operator=(NetnsThread&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    path_ = std::move(other.path_);
    fd_ = other.fd_;
    caller_fd_ = other.caller_fd_;
    err_ = other.err_;
    syscall_ = other.syscall_;
    other.fd_ = -1;
  }
  return *this;
}

NetnsThread::~NetnsThread() {
  if (fd_ >= 0) close(fd_);
}

std::string NetnsThread::Describe() const {
  if (!named()) return "this process's network namespace";
  if (!path_.empty()) return "network namespace " + path_;
  return "network namespace fd " + std::to_string(caller_fd_);
}

bool NetnsThread::OpenTarget(int* fd) {
  *fd = -1;
  if (fd_ >= 0) {
    *fd = fd_;
    return true;
  }
  if (path_.empty()) return true;
  int f = open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (f < 0) {
    err_ = errno;
    syscall_ = "open";
    return false;
  }
  *fd = f;
  return true;
}

bool NetnsThread::Run(const std::function<void()>& work) {
  err_ = 0;
  syscall_ = nullptr;
  int target = -1;
  if (!OpenTarget(&target)) return false;
  bool own_target = target >= 0 && target != fd_;
  int err = 0;
  const char* syscall = nullptr;
  auto body = [&] {
    if (target >= 0) {
      // Joining the namespace we are already in still needs CAP_SYS_ADMIN: skip it.
      struct stat want, have;
      bool same = fstat(target, &want) == 0 && stat("/proc/thread-self/ns/net", &have) == 0 &&
                  want.st_dev == have.st_dev && want.st_ino == have.st_ino;
      if (!same && setns(target, CLONE_NEWNET) < 0) {
        err = errno;
        syscall = "setns";
        return;
      }
    }
    try {
      work();
    } catch (const std::bad_alloc&) {
      err = ENOMEM;
      syscall = "malloc";
    }
  };
  try {
    std::thread helper(body);
    helper.join();
  } catch (const std::system_error& e) {
    err = e.code().value() ? e.code().value() : EAGAIN;
    syscall = "pthread_create";
  } catch (const std::bad_alloc&) {
    err = ENOMEM;
    syscall = "pthread_create";
  }
  if (own_target) close(target);
  if (err != 0) {
    err_ = err;
    syscall_ = syscall;
    return false;
  }
  return true;
}

Napi::Error NetnsThread::MakeError(Napi::Env env) const {
  const std::string what = Describe();
  const char* sc = syscall_ ? syscall_ : "setns";
  const bool is_fd = path_.empty();
  std::string msg;
  if (strcmp(sc, "setns") == 0 && err_ == EPERM) {
    msg = "joining " + what + " was refused (EPERM): setns() needs CAP_SYS_ADMIN in the user namespace that owns " +
          "that network namespace, and in this process's own user namespace; run as root, or from inside the " +
          "user namespace that created it (e.g. the same `unshare -U` session)";
  } else if (strcmp(sc, "setns") == 0 && err_ == EINVAL) {
    msg = (is_fd ? "fd " + std::to_string(caller_fd_) : path_) + " is not a network namespace (setns: EINVAL): " +
          "pass a /proc/PID/ns/net file, a bind mount of one such as /var/run/netns/NAME, or an open descriptor " +
          "of either (not another kind of namespace, e.g. /proc/PID/ns/mnt)";
  } else if (strcmp(sc, "open") == 0 && err_ == ENOENT) {
    msg = what + " does not exist (open: ENOENT): the process may have exited or the name is wrong; pass " +
          "/proc/PID/ns/net of a running process, a namespace created with `ip netns add NAME` " +
          "(/var/run/netns/NAME), or an open namespace descriptor";
  } else if (strcmp(sc, "open") == 0 && (err_ == EACCES || err_ == EPERM)) {
    msg = "cannot open " + what + " (open: " + strerror(err_) + "): /proc/PID/ns/net of another user's process " +
          "can be opened only with ptrace access to it (same user, or CAP_SYS_PTRACE)";
  } else if (strncmp(sc, "fcntl", 5) == 0 && err_ == EBADF) {
    msg = "netnsFd " + std::to_string(caller_fd_) + " is not an open file descriptor (EBADF): keep the namespace " +
          "file open until the call returns";
  } else if (err_ == ENOMEM) {
    msg = std::string("out of memory working in ") + what + " (" + sc + ": " + strerror(err_) + ")";
  } else {
    msg = std::string("cannot enter ") + what + " (" + sc + ": " + strerror(err_) + ")";
  }
  Napi::Error e = ErrnoError(env, msg, sc, err_);
  if (!named()) return e;
  if (is_fd) e.Set("netnsFd", Napi::Number::New(env, caller_fd_));
  else e.Set("netns", Napi::String::New(env, path_));
  return e;
}

}  // namespace conntrack
