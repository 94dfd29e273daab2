// Per-environment state (main thread, each worker thread, each jest VM context that loads
// the addon). Tracks live sockets so the environment's cleanup hook can close them.
#pragma once

#include <napi.h>
#include <libmnl/libmnl.h>
#include <unordered_set>

namespace conntrack {

class Socket;

class AddonState {
 public:
  Napi::FunctionReference socket_ctor;
  std::unordered_set<Socket*> sockets;
  bool shutting_down = false;
  // A socket made elsewhere (on a namespace helper thread) for the next Socket constructor
  // call on this thread to adopt; set and consumed within one synchronous stretch.
  struct mnl_socket* adopt = nullptr;
};

}  // namespace conntrack
