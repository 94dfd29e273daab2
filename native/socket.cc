#include "socket.h"
#include "poller.h"
#include "dumper.h"
#include "sender.h"
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/netlink.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <string>

#ifndef SO_MEMINFO
#define SO_MEMINFO 55  // include/uapi/asm-generic/socket.h
#endif
#ifndef SK_MEMINFO_VARS
#define SK_MEMINFO_VARS 9  // include/uapi/linux/sock_diag.h: SK_MEMINFO_RMEM_ALLOC .. SK_MEMINFO_DROPS
#endif

namespace conntrack {

void ThrowErrno(Napi::Env env, const char* syscall, int err) {
  Napi::Error e = Napi::Error::New(env, std::string(syscall) + ": " + strerror(err));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, syscall));
  throw e;
}

Napi::Function Socket::Init(Napi::Env env) {
  return DefineClass(
      env, "Socket",
      {
          InstanceAccessor<&Socket::PortId>("portId"),
          InstanceAccessor<&Socket::Fd>("fd"),
          InstanceMethod<&Socket::Request>("request"),
          InstanceMethod<&Socket::RequestBatch>("requestBatch"),
          InstanceMethod<&Socket::Start>("start"),
          InstanceMethod<&Socket::Pause>("pause"),
          InstanceMethod<&Socket::Ref>("ref"),
          InstanceMethod<&Socket::Unref>("unref"),
          InstanceMethod<&Socket::SetReceiveBuffer>("setReceiveBuffer"),
          InstanceMethod<&Socket::GetReceiveBuffer>("getReceiveBuffer"),
          InstanceMethod<&Socket::MemInfo>("memInfo"),
          InstanceMethod<&Socket::SetNetlinkOption>("setNetlinkOption"),
          InstanceMethod<&Socket::JoinGroup>("joinGroup"),
          InstanceMethod<&Socket::LeaveGroup>("leaveGroup"),
          InstanceMethod<&Socket::AttachFilter>("attachFilter"),
          InstanceMethod<&Socket::DetachFilter>("detachFilter"),
          InstanceMethod<&Socket::Close>("close"),
      });
}

// Opens the netlink socket inside the network namespace at `path` (a /proc/PID/ns/net or
// /var/run/netns/NAME file). A socket stays in the namespace it was created in, so the
// calling thread switches in, creates it and switches straight back.
static struct mnl_socket* OpenInNetns(Napi::Env env, const std::string& path) {
  int target = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (target < 0) ThrowErrno(env, "open(netns)", errno);
  int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (home < 0) {
    int err = errno;
    close(target);
    ThrowErrno(env, "open(/proc/thread-self/ns/net)", err);
  }
  if (setns(target, CLONE_NEWNET) < 0) {
    int err = errno;
    close(target);
    close(home);
    ThrowErrno(env, "setns", err);
  }
  struct mnl_socket* nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_NONBLOCK | SOCK_CLOEXEC);
  int open_err = nl ? 0 : errno;
  int back = setns(home, CLONE_NEWNET);
  int back_err = errno;
  close(target);
  close(home);
  if (back < 0) {
    // Staying in the wrong namespace would silently misdirect every later socket.
    if (nl) mnl_socket_close(nl);
    Napi::Error::Fatal("conntrack", (std::string("cannot return to the original network namespace: ") +
                                     strerror(back_err)).c_str());
  }
  if (!nl) ThrowErrno(env, "socket", open_err);
  return nl;
}

// new Socket(onData, { netns?: string })
Socket::Socket(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Socket>(info) {
  Napi::Env env = info.Env();
  if (!info[0].IsFunction()) throw Napi::TypeError::New(env, "Socket: onData must be a function");
  on_data_ = Napi::Persistent(info[0].As<Napi::Function>());

  std::string netns;
  bool threaded = false;
  bool async_send = false;
  if (info[1].IsObject()) {
    Napi::Value ns = info[1].As<Napi::Object>().Get("netns");
    if (ns.IsString()) netns = ns.As<Napi::String>().Utf8Value();
    threaded = info[1].As<Napi::Object>().Get("threaded").ToBoolean();
    async_send = info[1].As<Napi::Object>().Get("asyncSend").ToBoolean();
  }

  nl_ = netns.empty() ? mnl_socket_open2(NETLINK_NETFILTER, SOCK_NONBLOCK | SOCK_CLOEXEC)
                      : OpenInNetns(env, netns);
  if (!nl_) ThrowErrno(env, "socket", errno);
  if (mnl_socket_bind(nl_, 0, MNL_SOCKET_AUTOPID) < 0) {
    int err = errno;
    mnl_socket_close(nl_);
    nl_ = nullptr;
    ThrowErrno(env, "bind", err);
  }
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

  state_ = env.GetInstanceData<AddonState>();
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  if (threaded) {
    dumper_ = new Dumper(loop, fd_, this);
    if (!dumper_->ok()) {  // no wake-up fd: the reader thread could never be stopped
      int err = dumper_->wake_error();
      dumper_->Close();
      dumper_ = nullptr;
      mnl_socket_close(nl_);
      nl_ = nullptr;
      fd_ = -1;
      ThrowErrno(env, "eventfd", err);
    }
  }
  else poller_ = new Poller(loop, fd_, this);
  if (async_send) sender_ = new Sender(loop, fd_, this);
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
  if (dumper_) {
    dumper_->Close();  // joins the reader thread; the handle frees itself later
    dumper_ = nullptr;
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

// Calls onData(batch, overruns, skipped, errno) from a libuv callback. Raw N-API calls with
// status checks: while an environment is being torn down (a worker calling process.exit(),
// say) JS cannot run, and node-addon-api would abort trying to build an Error for that;
// the batch is then simply dropped with the socket. The buffer is a copy (V8 accounts for
// it and collects it promptly, which keeps a streaming dump's RSS flat).
void Socket::Deliver(const char* data, size_t len, uint32_t overruns, uint32_t skipped, int err) {
  napi_env raw = Env();
  napi_handle_scope scope;
  if (napi_open_handle_scope(raw, &scope) != napi_ok) return;
  napi_value argv[4];
  bool ok;
  if (len > 0) {
    void* copy = nullptr;
    ok = napi_create_buffer_copy(raw, len, data, &copy, &argv[0]) == napi_ok;
  } else {
    ok = napi_get_null(raw, &argv[0]) == napi_ok;
  }
  ok = ok && napi_create_uint32(raw, overruns, &argv[1]) == napi_ok &&
       napi_create_uint32(raw, skipped, &argv[2]) == napi_ok && napi_create_int32(raw, err, &argv[3]) == napi_ok;
  if (ok) {
    napi_value result;
    if (napi_make_callback(raw, nullptr, Value(), on_data_.Value(), 4, argv, &result) == napi_pending_exception) {
      // An exception thrown by the JS callback: report it as uncaught, like any callback.
      napi_value exc;
      if (napi_get_and_clear_last_exception(raw, &exc) == napi_ok) napi_fatal_exception(raw, exc);
    }
  }
  napi_close_handle_scope(raw, scope);
}

void Socket::CheckOpen(Napi::Env env) const {
  if (!nl_) ThrowErrno(env, "closed", EBADF);
}

uint32_t Socket::NextSeq() {
  if (++seq_ == 0) seq_ = 1;  // 0 marks unsolicited (event) messages; never use it
  return seq_;
}

Napi::Value Socket::PortId(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), portid_);
}

Napi::Value Socket::Fd(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), fd_);
}

// start(batchBytes?): read on the event loop; keeps this object alive while active.
Napi::Value Socket::Start(const Napi::CallbackInfo& info) {
  CheckOpen(info.Env());
  size_t batch = info[0].IsNumber() ? info[0].As<Napi::Number>().Uint32Value() : 0;
  if (dumper_) {
    if (!dumper_->active()) Napi::ObjectWrap<Socket>::Ref();
    dumper_->Start(batch);
    return info.Env().Undefined();
  }
  if (!poller_->active()) Napi::ObjectWrap<Socket>::Ref();
  poller_->Start(batch);
  return info.Env().Undefined();
}

Napi::Value Socket::Pause(const Napi::CallbackInfo& info) {
  if (dumper_ && dumper_->active()) {
    dumper_->Stop();
    Napi::ObjectWrap<Socket>::Unref();
  }
  if (poller_ && poller_->active()) {
    poller_->Stop();
    Napi::ObjectWrap<Socket>::Unref();
  }
  return info.Env().Undefined();
}

Napi::Value Socket::Ref(const Napi::CallbackInfo& info) {
  if (poller_) poller_->Ref();
  if (dumper_) dumper_->Ref();
  return info.Env().Undefined();
}

Napi::Value Socket::Unref(const Napi::CallbackInfo& info) {
  if (poller_) poller_->Unref();
  if (dumper_) dumper_->Unref();
  return info.Env().Undefined();
}

// setReceiveBuffer(bytes, force): SO_RCVBUFFORCE when force and permitted (CAP_NET_ADMIN
// in the initial namespace), else SO_RCVBUF (capped by net.core.rmem_max). Returns the
// size the kernel granted (it doubles the request for bookkeeping overhead).
Napi::Value Socket::SetReceiveBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  int size = static_cast<int>(info[0].As<Napi::Number>().Int64Value());
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

// memInfo(): the SO_MEMINFO array (SK_MEMINFO_RMEM_ALLOC, RCVBUF, WMEM_ALLOC, SNDBUF,
// FWD_ALLOC, WMEM_QUEUED, OPTMEM, BACKLOG, DROPS). DROPS counts messages the kernel could
// not queue on this socket (netlink_overrun() increments it).
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

// setNetlinkOption(option, value): SOL_NETLINK options such as NETLINK_BROADCAST_ERROR (4)
// and NETLINK_NO_ENOBUFS (5).
Napi::Value Socket::SetNetlinkOption(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  int opt = info[0].As<Napi::Number>().Int32Value();
  int val = info[1].ToNumber().Int32Value();
  if (setsockopt(fd_, SOL_NETLINK, opt, &val, sizeof val) < 0) ThrowErrno(env, "setsockopt(SOL_NETLINK)", errno);
  return env.Undefined();
}

Napi::Value Socket::JoinGroup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  int group = info[0].As<Napi::Number>().Int32Value();
  if (setsockopt(fd_, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof group) < 0)
    ThrowErrno(env, "setsockopt(NETLINK_ADD_MEMBERSHIP)", errno);
  return env.Undefined();
}

Napi::Value Socket::LeaveGroup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  int group = info[0].As<Napi::Number>().Int32Value();
  if (setsockopt(fd_, SOL_NETLINK, NETLINK_DROP_MEMBERSHIP, &group, sizeof group) < 0)
    ThrowErrno(env, "setsockopt(NETLINK_DROP_MEMBERSHIP)", errno);
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

Napi::Value Socket::DetachFilter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  int zero = 0;
  if (setsockopt(fd_, SOL_SOCKET, SO_DETACH_FILTER, &zero, sizeof zero) < 0 && errno != ENOENT)
    ThrowErrno(env, "setsockopt(SO_DETACH_FILTER)", errno);
  return env.Undefined();
}

Napi::Value Socket::Close(const Napi::CallbackInfo& info) {
  bool was_active = (poller_ && poller_->active()) || (dumper_ && dumper_->active());
  Shutdown();
  if (was_active) Napi::ObjectWrap<Socket>::Unref();
  on_data_.Reset();
  return info.Env().Undefined();
}

}  // namespace conntrack
