// Module entry: per-environment instance data and the cleanup hook.
#include "socket.h"
#include "state.h"
#include "request.h"

namespace conntrack {

static void CleanupEnv(void* arg) {
  auto* state = static_cast<AddonState*>(arg);
  state->shutting_down = true;
  // Shutdown() removes the socket from the set, so iterate over a copy.
  std::unordered_set<Socket*> live(state->sockets);
  for (Socket* s : live) s->Shutdown();
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* state = new AddonState();
  env.SetInstanceData<AddonState>(state);  // deleted by node-addon-api at env teardown
  napi_add_env_cleanup_hook(env, CleanupEnv, state);

  Napi::Function ctor = Socket::Init(env);
  state->socket_ctor = Napi::Persistent(ctor);
  exports.Set("Socket", ctor);
  InitRequest(env, exports);
  return exports;
}

}  // namespace conntrack

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  return conntrack::Init(env, exports);
}

NODE_API_MODULE(NODE_GYP_MODULE_NAME, InitModule)
