// Reads a dump socket on a native thread, so the kernel's work (which happens inside
// recvmsg(): each call makes the next batch of the dump) overlaps with JavaScript decoding
// the previous batch. Whole batches are handed to JS on the event loop, one call per batch.
// Same contract as Poller (start/stop/ref/unref/close), chosen per socket at construction.
#pragma once

#include <uv.h>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

namespace conntrack {

class Socket;

class Dumper {
 public:
  Dumper(uv_loop_t* loop, int fd, Socket* owner);
  // Resume reading and delivering (starts the thread on first use).
  void Start(size_t batch_bytes);
  // Pause: the thread stops once its queue is full; nothing more is delivered to JS.
  void Stop();
  // Stops and joins the thread, then closes the handle; deletes itself in the close callback.
  void Close();
  void Ref();
  void Unref();
  bool active() const { return !paused_; }
  // False when the wake-up eventfd could not be made (the socket must not be used).
  bool ok() const { return wake_fd_ >= 0; }
  int wake_error() const { return wake_err_; }

 private:
  struct Block {
    std::vector<char>* data;
    size_t used;
    uint32_t overruns;
    uint32_t skipped;
    int fatal;
  };

  void Run();
  void Publish(Block b);
  void UpdateRef();
  void Deliver();
  void Recycle(std::vector<char>* data);
  static void OnAsync(uv_async_t* handle);
  static void OnClose(uv_handle_t* handle);

  uv_async_t async_;
  int fd_;
  int wake_fd_ = -1;
  int wake_err_ = 0;
  Socket* owner_;
  std::thread thread_;
  bool started_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Block> queue_;
  std::vector<std::vector<char>*> free_;
  size_t queued_bytes_ = 0;
  bool paused_ = true;    // written on the main thread, read by the thread under mu_
  bool stop_ = false;
  bool finished_ = false; // the thread exited (fatal error)
  bool closing_ = false;
  bool user_ref_ = true;
  bool delivering_ = false;
  size_t batch_bytes_ = 256 * 1024;
  int64_t last_publish_ns_ = 0;  // reader thread only: when the last block was queued
};

}  // namespace conntrack
