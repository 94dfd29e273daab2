// Module entry: per-environment instance data, the cleanup hook and the exports.
#include "addon_state.h"
#include "errors.h"
#include "fault_injection.h"
#include "netns_files_worker.h"
#include "open_socket_worker.h"
#include "socket.h"

#include <errno.h>

namespace conntrack {

static void CleanupEnv(void* arg) {
  auto* state = static_cast<AddonState*>(arg);
  state->shutting_down = true;
  // Shutdown() removes the socket from the set, so iterate over a copy.
  std::unordered_set<Socket*> live(state->sockets);
  for (Socket* s : live) s->Shutdown();
}

// testing.failAllocation(n) / testing.failSend(n, errno) / testing.reset(): arm the fault
// injection (fault_injection.h) for the native tests.
static Napi::Object TestingExports(Napi::Env env) {
  Napi::Object t = Napi::Object::New(env);
  t.Set("failAllocation", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
    FaultInjection::FailAllocation(info[0].ToNumber().Int32Value());
  }));
  t.Set("failSend", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
    FaultInjection::FailSend(info[0].ToNumber().Int32Value(), info[1].ToNumber().Int32Value());
  }));
  t.Set("reset", Napi::Function::New(env, [](const Napi::CallbackInfo&) { FaultInjection::Reset(); }));
  return t;
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* state = new AddonState();
  env.SetInstanceData<AddonState>(state);  // deleted by node-addon-api at env teardown
  napi_add_env_cleanup_hook(env, CleanupEnv, state);

  Napi::Function ctor = Socket::Init(env);
  state->socket_ctor = Napi::Persistent(ctor);  // openSocket() constructs through it
  exports.Set("Socket", ctor);
  exports.Set("openSocket", Napi::Function::New(env, OpenSocketWorker::OpenSocket, "openSocket"));
  exports.Set("netnsFiles", Napi::Function::New(env, NetnsFilesWorker::NetnsFiles, "netnsFiles"));
  exports.Set("testing", TestingExports(env));
  return exports;
}

}  // namespace conntrack

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  return conntrack::Init(env, exports);
}

NODE_API_MODULE(NODE_GYP_MODULE_NAME, InitModule)
