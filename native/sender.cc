#include "sender.h"
#include "fault_injection.h"
#include "request.h"
#include "socket.h"
#include "start_thread.h"

#include <errno.h>
#include <libmnl/libmnl.h>
#include <sys/socket.h>
#include <new>

namespace conntrack {

Sender::Sender(uv_loop_t* loop, int fd, Socket* owner) : fd_(fd), owner_(owner) {
  uv_async_init(loop, &async_, OnAsync);
  async_.data = this;
  // Pending requests keep the loop alive through the reading side; this handle never should.
  uv_unref(reinterpret_cast<uv_handle_t*>(&async_));
}

int Sender::Start() { return StartThread(&thread_, [this] { Run(); }); }

int Sender::Enqueue(const char* data, size_t len) {
  try {
    FaultInjection::AllocationPoint();
    std::vector<char> block(data, data + len);
    std::lock_guard<std::mutex> lk(mu_);
    if (failed_) return ENOMEM;
    queue_.push_back(std::move(block));
  } catch (const std::bad_alloc&) {
    return ENOMEM;
  }
  cv_.notify_one();
  return 0;
}

void Sender::Close() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
    queue_.clear();
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
  owner_ = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), OnClose);
}

void Sender::OnClose(uv_handle_t* handle) {
  delete static_cast<Sender*>(handle->data);
}

// An allocation failure on this thread must not abort the process: the sender stops, and
// the socket reports ENOMEM, which fails every request in flight.
void Sender::Run() {
  try {
    Loop();
  } catch (const std::bad_alloc&) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      failed_ = true;
      queue_.clear();
    }
    uv_async_send(&async_);
  }
}

void Sender::Loop() {
  for (;;) {
    std::vector<char> block;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [this] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      block = std::move(queue_.front());
      queue_.pop_front();
    }
    int err = SendDatagram(fd_, block.data(), block.size());
    if (err == 0) continue;
    {
      // The kernel took none of this block: name its requests so JS fails exactly those
      // (requests in earlier blocks were carried out, and their acks are on the way).
      std::lock_guard<std::mutex> lk(mu_);
      if (error_ == 0) error_ = err;
      const struct nlmsghdr* nlh = reinterpret_cast<const struct nlmsghdr*>(block.data());
      int left = static_cast<int>(block.size());
      while (mnl_nlmsg_ok(nlh, left)) {
        FaultInjection::AllocationPoint();
        failed_seqs_.push_back(nlh->nlmsg_seq);
        nlh = mnl_nlmsg_next(nlh, &left);
      }
    }
    uv_async_send(&async_);
  }
}

// On the loop: a send failed. The requests of that block will never be answered: JS gets
// their sequence numbers (u32 each, host order) with a negative errno, and fails them.
// After an allocation failure JS gets a positive ENOMEM instead: every request fails.
void Sender::OnAsync(uv_async_t* handle) {
  static_cast<Sender*>(handle->data)->Report();
}

void Sender::Report() {
  Sender* self = this;
  int err;
  bool failed;
  std::vector<uint32_t> seqs;
  {
    std::lock_guard<std::mutex> lk(self->mu_);
    err = self->error_;
    self->error_ = 0;
    seqs.swap(self->failed_seqs_);
    failed = self->failed_ && !self->failure_reported_;
    if (failed) self->failure_reported_ = true;
  }
  if (self->owner_ == nullptr) return;
  if (err != 0) self->owner_->Deliver(reinterpret_cast<const char*>(seqs.data()), seqs.size() * sizeof(uint32_t), 0, 0, -err);
  if (failed && self->owner_ != nullptr) self->owner_->Deliver(nullptr, 0, 0, 0, ENOMEM);
}

}  // namespace conntrack
