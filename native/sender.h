// Sends requests on a native thread, in order. Netlink hands a request to the kernel
// subsystem inside sendmsg() itself (ctnetlink creates or deletes the entry before the
// call returns), so for bulk operations the kernel's work then overlaps with JavaScript
// validating and encoding the next batch. Acks are read on the event loop as usual.
#pragma once

#include <uv.h>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <thread>
#include <cstdint>
#include <vector>

namespace conntrack {

class Socket;

class Sender {
 public:
  Sender(uv_loop_t* loop, int fd, Socket* owner);
  // Queues whole netlink messages (one sendmsg() each block); never blocks.
  void Enqueue(std::vector<char>&& block);
  // Stops the thread (after the send in progress), then closes the handle; deletes itself
  // in the close callback. Blocks still queued are dropped: their requests fail in JS.
  void Close();

 private:
  void Run();
  static void OnAsync(uv_async_t* handle);
  static void OnClose(uv_handle_t* handle);

  uv_async_t async_;
  int fd_;
  Socket* owner_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::vector<char>> queue_;
  bool stop_ = false;
  int error_ = 0;                     // first send() failure since the last report
  std::vector<uint32_t> failed_seqs_;  // sequence numbers of the messages that were not sent
};

}  // namespace conntrack
