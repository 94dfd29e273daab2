// Reads a netlink socket on a native thread: dump sockets (the kernel builds the next part
// of a dump inside recvmsg(), so reading it on a thread overlaps that work with JavaScript
// decoding the previous batch) and event sockets (the thread drains the socket buffer
// while JS decodes, so bursts overrun it less). Whole batches are handed to JS on the
// event loop, one call per batch. Same contract as Poller (start/stop/ref/unref/close),
// chosen per socket at construction.
#pragma once

#include <uv.h>
#include "page_buffer.h"
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

namespace conntrack {

class Socket;

class ReaderThread {
 public:
  ReaderThread(uv_loop_t* loop, int fd, Socket* owner);
  // Resume reading and delivering (starts the thread on first use). Returns 0, or the
  // errno when the thread cannot be started.
  int Start(size_t batch_bytes);
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
  // Received datagrams waiting for JS (data is null for a block that carries only an error).
  struct Block {
    PageBuffer* data;
    size_t used;
    uint32_t overruns;
    uint32_t skipped;
    int fatal;
  };

  void Run();
  void Loop();
  void Publish(Block b);
  bool Backlogged();  // blocks wait for JS
  // What a queued block counts against kMaxQueued: its allocation.
  static size_t BlockBytes(const Block& b);
  void UpdateRef();
  void Deliver();
  void Recycle(PageBuffer* data);
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
  std::vector<PageBuffer*> free_;
  size_t queued_bytes_ = 0;
  bool paused_ = true;     // written on the main thread, read by the thread under mu_
  bool stop_ = false;
  int thread_error_ = 0;   // the thread stopped on this errno (ENOMEM) outside a block
  bool closing_ = false;
  bool user_ref_ = true;
  bool delivering_ = false;
  size_t batch_bytes_ = 256 * 1024;
  int64_t last_publish_ns_ = 0;  // reader thread only: when the last block was queued
};

}  // namespace conntrack
