// Sends requests on a native thread, in order. Netlink hands a request to the kernel
// subsystem inside sendmsg() itself (ctnetlink creates or deletes the entry before the
// call returns), so for bulk operations the kernel's work then overlaps with JavaScript
// validating and encoding the next batch. Acks are read on the event loop as usual.
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

class Sender {
 public:
  Sender(uv_loop_t* loop, int fd, Socket* owner);
  // Starts the thread; returns 0 or an errno (then Close() it).
  int Start();
  // Queues a copy of whole netlink messages (one sendmsg() for the block); never blocks.
  // Returns 0, or ENOMEM when the copy cannot be made or the thread has failed.
  int Enqueue(const char* data, size_t len);
  // Stops the thread (after the send in progress), then closes the handle; deletes itself
  // in the close callback. Blocks still queued are dropped: their requests fail in JS.
  void Close();
  // On the loop: hands failed sends (and an allocation failure) recorded so far to JS now.
  // The socket calls it before delivering replies, so those failures are known first.
  void Report();

 private:
  void Run();
  void Loop();
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
  bool failed_ = false;                // the thread stopped on an allocation failure
  bool failure_reported_ = false;
  int error_ = 0;                      // first send() failure since the last report
  std::vector<uint32_t> failed_seqs_;  // sequence numbers of the messages that were not sent
};

}  // namespace conntrack
