// Reads a netlink socket on the event loop: a uv_poll_t on the fd, draining a bounded
// batch per wake-up and making one JS call per batch.
#pragma once

#include <uv.h>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace conntrack {

class Socket;

class Poller {
 public:
  Poller(uv_loop_t* loop, int fd, Socket* owner);
  void Start(size_t batch_bytes);
  void Stop();
  // Stops polling and closes the handle; the Poller deletes itself in the close callback.
  void Close();
  void Ref() { uv_ref(reinterpret_cast<uv_handle_t*>(&handle_)); }
  void Unref() { uv_unref(reinterpret_cast<uv_handle_t*>(&handle_)); }
  bool active() const { return active_; }

 private:
  static void OnPoll(uv_poll_t* handle, int status, int events);
  static void OnClose(uv_handle_t* handle);
  void Drain();

  uv_poll_t handle_;
  int fd_;
  Socket* owner_;
  bool active_ = false;
  bool closing_ = false;
  size_t batch_bytes_ = 1 << 20;
  std::vector<char> block_;
};

}  // namespace conntrack
