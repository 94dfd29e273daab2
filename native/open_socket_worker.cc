#include "open_socket_worker.h"
#include "addon_state.h"
#include "errors.h"
#include "socket.h"

#include <errno.h>
#include <string.h>
#include <new>
#include <string>

namespace conntrack {

Napi::Value OpenSocketWorker::OpenSocket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    if (!info[0].IsFunction()) throw Napi::TypeError::New(env, "openSocket: onData must be a function");
    NetnsThread ns = NetnsThread::FromOptions(env, info[1]);
    auto* worker = new OpenSocketWorker(env, info[0].As<Napi::Function>(), info[1], std::move(ns));
    Napi::Promise promise = worker->deferred_.Promise();
    worker->Queue();
    return promise;
  } catch (const std::bad_alloc&) {
    ThrowErrno(env, "malloc", ENOMEM);
  }
}

OpenSocketWorker::OpenSocketWorker(Napi::Env env, Napi::Function on_data, Napi::Value options, NetnsThread ns)
    : Napi::AsyncWorker(env, "conntrack.openSocket"),
      deferred_(Napi::Promise::Deferred::New(env)),
      on_data_(Napi::Persistent(on_data)),
      options_(Napi::Persistent(options)),
      ns_(std::move(ns)) {}

OpenSocketWorker::~OpenSocketWorker() {
  if (nl_) mnl_socket_close(nl_);  // not adopted (the environment went away first)
}

// Thread pool: make the socket, on a helper thread inside the namespace when one is named.
void OpenSocketWorker::Execute() {
  if (!ns_.named()) {
    joined_ = true;
    nl_ = Socket::OpenNetlink();
    if (!nl_) open_err_ = errno;
    return;
  }
  joined_ = ns_.Run([this] {
    nl_ = Socket::OpenNetlink();
    if (!nl_) open_err_ = errno;
  });
}

// JS thread: Execute() threw (std::bad_alloc, say): node-addon-api caught it.
void OpenSocketWorker::OnError(const Napi::Error& e) {
  Napi::HandleScope scope(Env());
  deferred_.Reject(ErrnoError(Env(), std::string("openSocket: ") + e.Message(), "malloc", ENOMEM).Value());
}

// JS thread: wrap the socket (the constructor adopts it) and settle the promise.
void OpenSocketWorker::OnOK() {
  Napi::Env env = Env();
  Napi::HandleScope scope(env);
  if (!joined_) {
    deferred_.Reject(ns_.MakeError(env).Value());
    return;
  }
  if (!nl_) {
    std::string where = ns_.named() ? " in " + ns_.Describe() : "";
    deferred_.Reject(ErrnoError(env, "socket()" + where + ": " + strerror(open_err_), "socket", open_err_).Value());
    return;
  }
  auto* state = env.GetInstanceData<AddonState>();
  if (state == nullptr || state->shutting_down) {
    deferred_.Reject(ErrnoError(env, "openSocket: the environment is shutting down", "socket", ECANCELED).Value());
    return;
  }
  // Closes the socket if the constructor never took it. A guard, not a statement after the
  // try: in an environment being torn down, Reject() in the handlers below throws too (N-API
  // cannot settle the promise), and the socket must not leak on that way out.
  struct AdoptGuard {
    AddonState* state;
    ~AdoptGuard() {
      if (state->adopt) {
        mnl_socket_close(state->adopt);
        state->adopt = nullptr;
      }
    }
  } guard{state};
  state->adopt = nl_;
  nl_ = nullptr;
  try {
    Napi::Object sock = state->socket_ctor.New({on_data_.Value(), options_.Value()});
    deferred_.Resolve(sock);
  } catch (const Napi::Error& e) {
    deferred_.Reject(e.Value());
  } catch (const std::bad_alloc&) {
    deferred_.Reject(ErrnoError(env, "malloc", ENOMEM).Value());
  }
}

}  // namespace conntrack
