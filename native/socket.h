// A non-blocking NETLINK_NETFILTER socket owned by one JS object.
//
// The socket is opened with libmnl, optionally inside another network namespace, and read
// on the event loop through a uv_poll_t (see poller.cc). Whole receive batches are handed
// to JavaScript as one Buffer per wake-up; all decoding happens in lib/.
#pragma once

#include <napi.h>
#include <uv.h>
#include <libmnl/libmnl.h>
#include <cstdint>

namespace conntrack {

class AddonState;

class Socket : public Napi::ObjectWrap<Socket> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit Socket(const Napi::CallbackInfo& info);
  ~Socket() override;

  // Called by the per-environment cleanup hook: stop reading and close the fd now.
  void Shutdown();
  // Hands one receive batch to JS: onData(copy of data, overruns, skipped, errno).
  void Deliver(const char* data, size_t len, uint32_t overruns, uint32_t skipped, int err);

 private:
  friend class Poller;
  friend class Dumper;
  friend class Sender;

  Napi::Value PortId(const Napi::CallbackInfo& info);
  Napi::Value Fd(const Napi::CallbackInfo& info);
  Napi::Value Request(const Napi::CallbackInfo& info);
  Napi::Value RequestBatch(const Napi::CallbackInfo& info);
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Pause(const Napi::CallbackInfo& info);
  Napi::Value Ref(const Napi::CallbackInfo& info);
  Napi::Value Unref(const Napi::CallbackInfo& info);
  Napi::Value SetReceiveBuffer(const Napi::CallbackInfo& info);
  Napi::Value GetReceiveBuffer(const Napi::CallbackInfo& info);
  Napi::Value MemInfo(const Napi::CallbackInfo& info);
  Napi::Value SetNetlinkOption(const Napi::CallbackInfo& info);
  Napi::Value JoinGroup(const Napi::CallbackInfo& info);
  Napi::Value LeaveGroup(const Napi::CallbackInfo& info);
  Napi::Value AttachFilter(const Napi::CallbackInfo& info);
  Napi::Value DetachFilter(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  void CheckOpen(Napi::Env env) const;
  uint32_t NextSeq();
  void Transmit(Napi::Env env, const char* data, size_t len);

  struct mnl_socket* nl_ = nullptr;
  int fd_ = -1;
  uint32_t portid_ = 0;
  uint32_t seq_ = 0;
  size_t max_send_ = 128 * 1024;  // largest datagram sendmsg() accepts (SO_SNDBUF - 32)
  class Poller* poller_ = nullptr;  // freed in its own uv close callback
  class Sender* sender_ = nullptr;  // optional: sends on a native thread
  class Dumper* dumper_ = nullptr;  // instead of poller_ for dump sockets ({ threaded: true })
  AddonState* state_ = nullptr;
  Napi::FunctionReference on_data_;
};

// Throws a JS Error carrying errno and the failed syscall, for lib/errors.ts to map.
[[noreturn]] void ThrowErrno(Napi::Env env, const char* syscall, int err);

}  // namespace conntrack
