// A non-blocking NETLINK_NETFILTER socket owned by one JS object.
//
// The socket is opened with libmnl, optionally inside another network namespace (on a
// helper thread, see netns_thread.h), and read either on the event loop through a
// uv_poll_t (poller.h) or on a native thread (reader_thread.h). Whole receive batches are
// handed to JavaScript as one Buffer per wake-up; all decoding happens in lib/.
//
// Lifetime: the onData callback is held weakly by the native side and strongly only
// through a hidden property of the JS wrapper, so a wrapper that JavaScript no longer
// reaches is collected together with its callback (and ~Socket closes the fd and stops
// the threads). While reading is started the wrapper is referenced (ObjectWrap::Ref), so
// an active socket is never collected.
#pragma once

#include <napi.h>
#include <uv.h>
#include <libmnl/libmnl.h>
#include <cstdint>

namespace conntrack {

class AddonState;
class Poller;
class ReaderThread;
class Sender;

class Socket : public Napi::ObjectWrap<Socket> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit Socket(const Napi::CallbackInfo& info);
  ~Socket() override;

  // Called by the per-environment cleanup hook: stop reading and close the fd now.
  void Shutdown();
  // Hands one receive batch to JS: onData(copy of data, overruns, skipped, errno).
  void Deliver(const char* data, size_t len, uint32_t overruns, uint32_t skipped, int err);
  // Reports the sender thread's failed sends to JS now (no-op without a sender thread).
  void ReportSendFailures();

  // Opens the netlink socket (in the caller's namespace); nullptr with errno on failure.
  static struct mnl_socket* OpenNetlink();

 private:
  // Turns std::bad_alloc escaping a method into a JS Error with errno ENOMEM (N-API
  // would otherwise terminate the process).
  template <Napi::Value (Socket::*M)(const Napi::CallbackInfo&)>
  Napi::Value Guarded(const Napi::CallbackInfo& info);

  void Construct(const Napi::CallbackInfo& info);
  Napi::Value PortId(const Napi::CallbackInfo& info);
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
  Napi::Value AttachFilter(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  void CheckOpen(Napi::Env env) const;
  bool Active() const;
  // Reserves `count` consecutive sequence numbers (never 0); returns the first.
  uint32_t ReserveSeqs(uint32_t count);
  // Sends (or queues on the sender thread) one datagram; returns 0 or an errno.
  int Transmit(const char* data, size_t len);

  struct mnl_socket* nl_ = nullptr;
  int fd_ = -1;
  uint32_t portid_ = 0;
  uint32_t seq_ = 0;
  size_t max_send_ = 128 * 1024;  // largest datagram sendmsg() accepts (SO_SNDBUF - 32)
  Poller* poller_ = nullptr;        // freed in its own uv close callback
  Sender* sender_ = nullptr;        // optional: sends on a native thread
  ReaderThread* reader_ = nullptr;  // instead of poller_ for dump sockets ({ threaded: true })
  AddonState* state_ = nullptr;
  Napi::FunctionReference on_data_;  // weak: kept alive by the wrapper's hidden property
};

}  // namespace conntrack
