#include "sender.h"
#include "socket.h"

#include <errno.h>
#include <libmnl/libmnl.h>
#include <sys/socket.h>

namespace conntrack {

Sender::Sender(uv_loop_t* loop, int fd, Socket* owner) : fd_(fd), owner_(owner) {
  uv_async_init(loop, &async_, OnAsync);
  async_.data = this;
  // Pending requests keep the loop alive through the reading side; this handle never should.
  uv_unref(reinterpret_cast<uv_handle_t*>(&async_));
  thread_ = std::thread([this] { Run(); });
}

void Sender::Enqueue(std::vector<char>&& block) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    queue_.push_back(std::move(block));
  }
  cv_.notify_one();
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

void Sender::Run() {
  for (;;) {
    std::vector<char> block;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [this] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      block = std::move(queue_.front());
      queue_.pop_front();
    }
    for (;;) {
      ssize_t n = send(fd_, block.data(), block.size(), 0);
      if (n >= 0) break;
      if (errno == EINTR) continue;
      int err = errno;
      {
        // The kernel took none of this block: name its requests so JS fails exactly those
        // (requests in earlier blocks were carried out, and their acks are on the way).
        std::lock_guard<std::mutex> lk(mu_);
        if (error_ == 0) error_ = err;
        const struct nlmsghdr* nlh = reinterpret_cast<const struct nlmsghdr*>(block.data());
        int left = static_cast<int>(block.size());
        while (mnl_nlmsg_ok(nlh, left)) {
          failed_seqs_.push_back(nlh->nlmsg_seq);
          nlh = mnl_nlmsg_next(nlh, &left);
        }
      }
      uv_async_send(&async_);
      break;
    }
  }
}

// On the loop: a send failed. The requests of that block will never be answered: JS gets
// their sequence numbers (u32 each, host order) with a negative errno, and fails them.
void Sender::OnAsync(uv_async_t* handle) {
  auto* self = static_cast<Sender*>(handle->data);
  int err;
  std::vector<uint32_t> seqs;
  {
    std::lock_guard<std::mutex> lk(self->mu_);
    err = self->error_;
    self->error_ = 0;
    seqs.swap(self->failed_seqs_);
  }
  if (err == 0 || self->owner_ == nullptr) return;
  self->owner_->Deliver(reinterpret_cast<const char*>(seqs.data()), seqs.size() * sizeof(uint32_t), 0, 0, -err);
}

}  // namespace conntrack
