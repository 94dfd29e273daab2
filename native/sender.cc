#include "sender.h"
#include "socket.h"

#include <errno.h>
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
        std::lock_guard<std::mutex> lk(mu_);
        if (error_ == 0) error_ = err;
      }
      uv_async_send(&async_);
      break;
    }
  }
}

// On the loop: a send failed. The requests in that block will never be answered, and
// nothing says which they were, so JS fails every request in flight (onData with a
// negative errno marks a send failure).
void Sender::OnAsync(uv_async_t* handle) {
  auto* self = static_cast<Sender*>(handle->data);
  int err;
  {
    std::lock_guard<std::mutex> lk(self->mu_);
    err = self->error_;
    self->error_ = 0;
  }
  if (err == 0 || self->owner_ == nullptr) return;
  self->owner_->ReportError(-err);
}

}  // namespace conntrack
