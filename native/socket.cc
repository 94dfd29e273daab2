#include "socket.h"
#include "addon_state.h"
#include "errors.h"
#include "fault_injection.h"
#include "netns_thread.h"
#include "poller.h"
#include "reader_thread.h"
#include "sender.h"

#include <errno.h>
#include <limits.h>
#include <linux/filter.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmath>
#include <new>
#include <string>
#include <system_error>

#ifndef SO_MEMINFO
#define SO_MEMINFO 55  // include/uapi/asm-generic/socket.h
#endif

namespace conntrack {

template <Napi::Value (Socket::*M)(const Napi::CallbackInfo&)>
Napi::Value Socket::Guarded(const Napi::CallbackInfo& info) {
  try {
    return (this->*M)(info);
  } catch (const std::bad_alloc&) {
    ThrowErrno(info.Env(), "malloc", ENOMEM);
  }
}

Napi::Function Socket::Init(Napi::Env env) {
  return DefineClass(
      env, "Socket",
      {
          InstanceAccessor<&Socket::Guarded<&Socket::PortId>>("portId"),
          InstanceMethod<&Socket::Guarded<&Socket::Request>>("request"),
          InstanceMethod<&Socket::Guarded<&Socket::RequestBatch>>("requestBatch"),
          InstanceMethod<&Socket::Guarded<&Socket::Start>>("start"),
          InstanceMethod<&Socket::Guarded<&Socket::Pause>>("pause"),
          InstanceMethod<&Socket::Guarded<&Socket::Ref>>("ref"),
          InstanceMethod<&Socket::Guarded<&Socket::Unref>>("unref"),
          InstanceMethod<&Socket::Guarded<&Socket::SetReceiveBuffer>>("setReceiveBuffer"),
          InstanceMethod<&Socket::Guarded<&Socket::GetReceiveBuffer>>("getReceiveBuffer"),
          InstanceMethod<&Socket::Guarded<&Socket::MemInfo>>("memInfo"),
          InstanceMethod<&Socket::Guarded<&Socket::SetNetlinkOption>>("setNetlinkOption"),
          InstanceMethod<&Socket::Guarded<&Socket::JoinGroup>>("joinGroup"),
          InstanceMethod<&Socket::Guarded<&Socket::AttachFilter>>("attachFilter"),
          InstanceMethod<&Socket::Guarded<&Socket::Close>>("close"),
      });
}

struct mnl_socket* Socket::OpenNetlink() {
  return mnl_socket_open2(NETLINK_NETFILTER, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

// new Socket(onData, { netns?: string, netnsFd?: number, threaded?: boolean, asyncSend?: boolean })
// With a namespace, the socket is made on a helper thread inside it (this call waits for
// that thread; openSocket() in open_socket_worker.cc does the same without blocking).
Socket::Socket(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Socket>(info) {
  try {
    Construct(info);
  } catch (const std::bad_alloc&) {
    Shutdown();
    ThrowErrno(info.Env(), "malloc", ENOMEM);
  } catch (...) {
    Shutdown();  // ~Socket does not run for a constructor that throws
    throw;
  }
}

void Socket::Construct(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  state_ = env.GetInstanceData<AddonState>();
  if (state_ && state_->adopt) {  // made by openSocket() on a namespace helper thread
    nl_ = state_->adopt;
    state_->adopt = nullptr;
  }
  if (!info[0].IsFunction()) throw Napi::TypeError::New(env, "Socket: onData must be a function");
  Napi::Function cb = info[0].As<Napi::Function>();
  // A JS-heap edge from the wrapper to its callback instead of a strong reference (a GC
  // root): the callback usually captures the wrapper's owner, and a root would keep that
  // cycle alive forever.
  Value().DefineProperty(Napi::PropertyDescriptor::Value(Napi::Symbol::New(env, "conntrack.onData"), cb, napi_default));
  on_data_ = Napi::Weak(cb);

  bool threaded = false;
  bool async_send = false;
  if (info[1].IsObject()) {
    threaded = info[1].As<Napi::Object>().Get("threaded").ToBoolean();
    async_send = info[1].As<Napi::Object>().Get("asyncSend").ToBoolean();
  }
  if (!nl_) {
    NetnsThread ns = NetnsThread::FromOptions(env, info[1]);
    if (ns.named()) {
      int open_err = 0;
      if (!ns.Run([&] {
            nl_ = OpenNetlink();
            if (!nl_) open_err = errno;
          }))
        throw ns.MakeError(env);
      if (!nl_) throw ErrnoError(env, "socket() in " + ns.Describe() + ": " + strerror(open_err), "socket", open_err);
    } else {
      nl_ = OpenNetlink();
      if (!nl_) ThrowErrno(env, "socket", errno);
    }
  }
  if (mnl_socket_bind(nl_, 0, MNL_SOCKET_AUTOPID) < 0) ThrowErrno(env, "bind", errno);
  fd_ = mnl_socket_get_fd(nl_);
  portid_ = mnl_socket_get_portid(nl_);

  // Extended acks carry the kernel's error text; capped acks do not echo our request.
  int one = 1;
  setsockopt(fd_, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
  setsockopt(fd_, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);

  // netlink_sendmsg() refuses a datagram over sk_sndbuf - 32: pack batches below that.
  int sndbuf = 0;
  socklen_t sndlen = sizeof sndbuf;
  if (getsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &sndbuf, &sndlen) == 0 && sndbuf > 4096) {
    size_t cap = static_cast<size_t>(sndbuf) - 64;
    if (cap < max_send_) max_send_ = cap;
  }

  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  if (threaded) {
    reader_ = new ReaderThread(loop, fd_, this);
    if (!reader_->ok()) ThrowErrno(env, "eventfd", reader_->wake_error());  // it could never be stopped
  } else {
    poller_ = new Poller(loop, fd_, this);
  }
  if (async_send) {
    sender_ = new Sender(loop, fd_, this);
    int err = sender_->Start();
    if (err != 0) ThrowErrno(env, "pthread_create", err);
  }
  if (state_) state_->sockets.insert(this);
}

Socket::~Socket() { Shutdown(); }

void Socket::Shutdown() {
  if (sender_) {
    sender_->Close();  // joins the sender thread before the fd goes away
    sender_ = nullptr;
  }
  if (poller_) {
    poller_->Close();  // the handle frees itself once libuv is done with it
    poller_ = nullptr;
  }
  if (reader_) {
    reader_->Close();  // joins the reader thread; the handle frees itself later
    reader_ = nullptr;
  }
  if (nl_) {
    mnl_socket_close(nl_);
    nl_ = nullptr;
    fd_ = -1;
  }
  if (state_) {
    state_->sockets.erase(this);
    state_ = nullptr;
  }
}

// Takes the pending JS exception, if there is one (false when nothing is pending).
static bool TakePendingException(napi_env env, napi_value* exc) {
  bool pending = false;
  return napi_is_exception_pending(env, &pending) == napi_ok && pending &&
         napi_get_and_clear_last_exception(env, exc) == napi_ok;
}

// Calls onData(batch, overruns, skipped, errno) from a libuv callback. Raw N-API calls with
// status checks: while an environment is being torn down (a worker calling process.exit(),
// say) JS cannot run, and node-addon-api would abort trying to build an Error for that;
// the batch is then simply dropped with the socket. The buffer is a copy (V8 accounts for
// it and collects it promptly, which keeps a streaming dump's RSS flat). A copy that
// cannot be allocated is reported as errno ENOMEM (the batch is lost, which fails the
// requests waiting on it).
void Socket::Deliver(const char* data, size_t len, uint32_t overruns, uint32_t skipped, int err) {
  napi_env raw = Env();
  napi_handle_scope scope;
  if (napi_open_handle_scope(raw, &scope) != napi_ok) return;
  napi_value cb = nullptr;
  if (napi_get_reference_value(raw, on_data_, &cb) != napi_ok || cb == nullptr) {
    napi_close_handle_scope(raw, scope);  // the wrapper and its callback are being collected
    return;
  }
  napi_value argv[4];
  bool ok = true;
  bool have_buffer = false;
  if (len > 0) {
    void* copy = nullptr;
    bool alloc_ok = true;
    try {
      FaultInjection::AllocationPoint();
    } catch (const std::bad_alloc&) {
      alloc_ok = false;
    }
    if (alloc_ok && napi_create_buffer_copy(raw, len, data, &copy, &argv[0]) == napi_ok) {
      have_buffer = true;
    } else {
      napi_value ignored;
      TakePendingException(raw, &ignored);
      err = ENOMEM;
    }
  }
  if (!have_buffer) ok = napi_get_null(raw, &argv[0]) == napi_ok;
  ok = ok && napi_create_uint32(raw, overruns, &argv[1]) == napi_ok &&
       napi_create_uint32(raw, skipped, &argv[2]) == napi_ok && napi_create_int32(raw, err, &argv[3]) == napi_ok;
  napi_value recv = nullptr;
  if (ok && (napi_get_reference_value(raw, static_cast<napi_ref>(*static_cast<Napi::Reference<Napi::Object>*>(this)), &recv) != napi_ok || recv == nullptr))
    ok = napi_get_undefined(raw, &recv) == napi_ok;
  if (ok) {
    napi_value result;
    if (napi_make_callback(raw, nullptr, recv, cb, 4, argv, &result) == napi_pending_exception) {
      // An exception thrown by the JS callback: report it as uncaught, like any callback.
      // (The same status with nothing pending means the environment is being torn down and
      // the callback never ran: nothing to report.)
      napi_value exc;
      if (TakePendingException(raw, &exc)) napi_fatal_exception(raw, exc);
    }
  }
  napi_close_handle_scope(raw, scope);
}

void Socket::ReportSendFailures() {
  if (sender_) sender_->Report();
}

void Socket::CheckOpen(Napi::Env env) const {
  if (!nl_) ThrowErrno(env, "closed", EBADF);
}

bool Socket::Active() const {
  return (poller_ && poller_->active()) || (reader_ && reader_->active());
}

uint32_t Socket::ReserveSeqs(uint32_t count) {
  // 0 marks unsolicited (event) messages and is never used; a run that would wrap past it
  // starts again from 1, so the numbers of one batch are always consecutive.
  if (static_cast<uint64_t>(seq_) + count > UINT32_MAX) seq_ = 0;
  uint32_t first = seq_ + 1;
  seq_ += count;
  return first;
}

Napi::Value Socket::PortId(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), portid_);
}

// start(batchBytes?): read; keeps this object (and so its callback) alive while active.
Napi::Value Socket::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  size_t batch = info[0].IsNumber() ? info[0].As<Napi::Number>().Uint32Value() : 0;
  bool was_active = Active();
  if (reader_) {
    int err = reader_->Start(batch);
    if (err != 0) ThrowErrno(env, "pthread_create", err);
  } else {
    poller_->Start(batch);
  }
  if (!was_active && Active()) Napi::ObjectWrap<Socket>::Ref();
  return env.Undefined();
}

Napi::Value Socket::Pause(const Napi::CallbackInfo& info) {
  if (Active()) {
    if (reader_) reader_->Stop();
    if (poller_) poller_->Stop();
    Napi::ObjectWrap<Socket>::Unref();
  }
  return info.Env().Undefined();
}

Napi::Value Socket::Ref(const Napi::CallbackInfo& info) {
  if (poller_) poller_->Ref();
  if (reader_) reader_->Ref();
  return info.Env().Undefined();
}

Napi::Value Socket::Unref(const Napi::CallbackInfo& info) {
  if (poller_) poller_->Unref();
  if (reader_) reader_->Unref();
  return info.Env().Undefined();
}

// setReceiveBuffer(bytes, force): SO_RCVBUFFORCE when force and permitted (CAP_NET_ADMIN
// in the initial namespace), else SO_RCVBUF (capped by net.core.rmem_max). Returns the
// size the kernel granted (it doubles the request for bookkeeping overhead, caps it at
// INT_MAX / 2 before doubling and raises it to SOCK_MIN_RCVBUF). `bytes` must be an
// integer from 1 to INT_MAX: the option is a C int.
Napi::Value Socket::SetReceiveBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "setReceiveBuffer: bytes must be a number");
  double d = info[0].As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d != std::floor(d) || d < 1 || d > static_cast<double>(INT_MAX))
    throw Napi::RangeError::New(env, "setReceiveBuffer: bytes must be an integer from 1 to 2147483647");
  int size = static_cast<int>(d);
  bool force = info[1].ToBoolean();
  bool forced = false;
  if (force && setsockopt(fd_, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) == 0) forced = true;
  if (!forced && setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &size, sizeof size) < 0)
    ThrowErrno(env, "setsockopt(SO_RCVBUF)", errno);
  int granted = 0;
  socklen_t len = sizeof granted;
  getsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &granted, &len);
  Napi::Object out = Napi::Object::New(env);
  out.Set("granted", Napi::Number::New(env, granted));
  out.Set("forced", Napi::Boolean::New(env, forced));
  return out;
}

Napi::Value Socket::GetReceiveBuffer(const Napi::CallbackInfo& info) {
  CheckOpen(info.Env());
  int granted = 0;
  socklen_t len = sizeof granted;
  getsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &granted, &len);
  return Napi::Number::New(info.Env(), granted);
}

// memInfo(): the SO_MEMINFO array, indexed by SK_MEMINFO_RMEM_ALLOC, _RCVBUF, _WMEM_ALLOC,
// _SNDBUF, _FWD_ALLOC, _WMEM_QUEUED, _OPTMEM, _BACKLOG, _DROPS (linux/sock_diag.h).
// SK_MEMINFO_DROPS counts messages the kernel could not queue on this socket
// (netlink_overrun() increments it).
Napi::Value Socket::MemInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  uint32_t mem[SK_MEMINFO_VARS] = {0};
  socklen_t len = sizeof mem;
  if (getsockopt(fd_, SOL_SOCKET, SO_MEMINFO, mem, &len) < 0) ThrowErrno(env, "getsockopt(SO_MEMINFO)", errno);
  Napi::Array out = Napi::Array::New(env, len / sizeof(uint32_t));
  for (uint32_t i = 0; i < len / sizeof(uint32_t); i++) out.Set(i, Napi::Number::New(env, mem[i]));
  return out;
}

// setNetlinkOption(option, value): SOL_NETLINK options such as NETLINK_BROADCAST_ERROR
// and NETLINK_NO_ENOBUFS (linux/netlink.h).
Napi::Value Socket::SetNetlinkOption(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "setNetlinkOption: option must be a number");
  int opt = info[0].As<Napi::Number>().Int32Value();
  int val = info[1].ToNumber().Int32Value();
  if (setsockopt(fd_, SOL_NETLINK, opt, &val, sizeof val) < 0) ThrowErrno(env, "setsockopt(SOL_NETLINK)", errno);
  return env.Undefined();
}

// joinGroup(group): NETLINK_ADD_MEMBERSHIP, e.g. NFNLGRP_CONNTRACK_NEW (linux/netfilter/nfnetlink.h).
Napi::Value Socket::JoinGroup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "joinGroup: group must be a number");
  int group = info[0].As<Napi::Number>().Int32Value();
  if (setsockopt(fd_, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof group) < 0)
    ThrowErrno(env, "setsockopt(NETLINK_ADD_MEMBERSHIP)", errno);
  return env.Undefined();
}

// attachFilter(program): a classic BPF program as packed struct sock_filter records
// (u16 code, u8 jt, u8 jf, u32 k; host byte order), compiled by lib/.
Napi::Value Socket::AttachFilter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  if (!info[0].IsBuffer()) throw Napi::TypeError::New(env, "attachFilter: program must be a Buffer");
  Napi::Buffer<uint8_t> prog = info[0].As<Napi::Buffer<uint8_t>>();
  if (prog.Length() == 0 || prog.Length() % sizeof(struct sock_filter) != 0 ||
      prog.Length() / sizeof(struct sock_filter) > BPF_MAXINSNS)
    throw Napi::RangeError::New(env, "attachFilter: program length must be a multiple of 8 bytes, 1 to 4096 instructions");
  struct sock_fprog fprog;
  fprog.len = static_cast<unsigned short>(prog.Length() / sizeof(struct sock_filter));
  fprog.filter = reinterpret_cast<struct sock_filter*>(prog.Data());
  if (setsockopt(fd_, SOL_SOCKET, SO_ATTACH_FILTER, &fprog, sizeof fprog) < 0)
    ThrowErrno(env, "setsockopt(SO_ATTACH_FILTER)", errno);
  return env.Undefined();
}

Napi::Value Socket::Close(const Napi::CallbackInfo& info) {
  bool was_active = Active();
  Shutdown();
  if (was_active) Napi::ObjectWrap<Socket>::Unref();
  on_data_.Reset();
  return info.Env().Undefined();
}

}  // namespace conntrack
