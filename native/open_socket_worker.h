// openSocket(onData, options): the asynchronous form of `new Socket(onData, options)`.
// The netlink socket is created on the libuv thread pool (inside the namespace, on a
// NetnsThread helper), and the Socket object is made on the JS thread when that is done,
// so neither the event loop nor the JS thread waits for, or enters, the namespace.
#pragma once

#include <napi.h>
#include <libmnl/libmnl.h>
#include "netns_thread.h"

namespace conntrack {

class OpenSocketWorker : public Napi::AsyncWorker {
 public:
  // The JS entry point; returns a Promise<Socket>.
  static Napi::Value OpenSocket(const Napi::CallbackInfo& info);

  OpenSocketWorker(Napi::Env env, Napi::Function on_data, Napi::Value options, NetnsThread ns);
  ~OpenSocketWorker() override;

 protected:
  void Execute() override;
  void OnOK() override;
  void OnError(const Napi::Error& e) override;

 private:
  Napi::Promise::Deferred deferred_;
  Napi::FunctionReference on_data_;
  Napi::Reference<Napi::Value> options_;
  NetnsThread ns_;
  struct mnl_socket* nl_ = nullptr;
  bool joined_ = false;
  int open_err_ = 0;
};

}  // namespace conntrack
