#include "dumper.h"
#include "socket.h"
#include "recv.h"

#include <errno.h>
#include <linux/netlink.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cstring>

namespace conntrack {

// The thread stops reading while this much is received but not yet handed to JS.
static constexpr size_t kMaxQueued = 4 << 20;

Dumper::Dumper(uv_loop_t* loop, int fd, Socket* owner) : fd_(fd), owner_(owner) {
  uv_async_init(loop, &async_, OnAsync);
  async_.data = this;
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) wake_err_ = errno;
  UpdateRef();
}

void Dumper::UpdateRef() {
  // Like a stopped uv_poll, a paused reader must not keep the event loop alive.
  if (closing_) return;
  if (user_ref_ && !paused_) uv_ref(reinterpret_cast<uv_handle_t*>(&async_));
  else uv_unref(reinterpret_cast<uv_handle_t*>(&async_));
}

void Dumper::Ref() {
  user_ref_ = true;
  UpdateRef();
}

void Dumper::Unref() {
  user_ref_ = false;
  UpdateRef();
}

void Dumper::Start(size_t batch_bytes) {
  if (closing_) return;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (batch_bytes >= 4096) batch_bytes_ = batch_bytes < (256u << 10) ? batch_bytes : (256u << 10);
    paused_ = false;
  }
  cv_.notify_one();
  UpdateRef();
  if (!started_) {
    started_ = true;
    thread_ = std::thread([this] { Run(); });
  }
  // Blocks may have queued up while paused.
  uv_async_send(&async_);
}

void Dumper::Stop() {
  std::lock_guard<std::mutex> lk(mu_);
  paused_ = true;
  UpdateRef();
}

void Dumper::Close() {
  if (closing_) return;
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
    paused_ = true;
  }
  cv_.notify_one();
  if (wake_fd_ >= 0) {
    uint64_t one = 1;
    ssize_t r = write(wake_fd_, &one, sizeof one);
    (void)r;
  }
  if (thread_.joinable()) thread_.join();
  if (wake_fd_ >= 0) close(wake_fd_);
  wake_fd_ = -1;
  closing_ = true;
  owner_ = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), OnClose);
}

// Blocks are reused (allocating 320 KB blocks on the reader thread would grow a malloc
// arena that glibc does not hand back, which shows up as RSS).
void Dumper::Recycle(std::vector<char>* data) {
  std::lock_guard<std::mutex> lk(mu_);
  if (free_.size() < 24) free_.push_back(data);
  else delete data;
}

void Dumper::OnClose(uv_handle_t* handle) {
  auto* self = static_cast<Dumper*>(handle->data);
  for (Block& b : self->queue_) delete b.data;
  for (auto* d : self->free_) delete d;
  delete self;
}

void Dumper::Publish(Block b) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    queued_bytes_ += b.used;
    queue_.push_back(b);
  }
  uv_async_send(&async_);
}

// The reader thread: fills blocks of whole, well-formed datagrams and queues them.
void Dumper::Run() {
  for (;;) {
    size_t batch;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [this] { return stop_ || (!paused_ && queued_bytes_ < kMaxQueued); });
      if (stop_) return;
      batch = batch_bytes_;
    }
    std::vector<char>* data = nullptr;
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (!free_.empty()) {
        data = free_.back();
        free_.pop_back();
      }
    }
    if (data == nullptr) data = new std::vector<char>();
    if (data->size() < batch + kMaxDatagram) data->resize(batch + kMaxDatagram);
    Block b{data, 0, 0, 0, 0};
    std::vector<char>& block = *b.data;
    while (b.used < batch) {
      size_t kept = 0;
      RecvCounters c;
      RecvStatus st = RecvOne(fd_, block.data() + b.used, block.size() - b.used, &kept, &c);
      b.overruns += c.overruns;
      b.skipped += c.skipped;
      if (st == RecvStatus::kFatal) {
        b.fatal = c.fatal;
        break;
      }
      if (st == RecvStatus::kAgain) {
        if (b.used > 0 || b.overruns > 0 || b.skipped > 0) break;  // hand over what we have
        struct pollfd fds[2] = {{fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
        int r = poll(fds, 2, -1);
        if (r < 0 && errno != EINTR) {
          b.fatal = errno;
          break;
        }
        if (fds[1].revents) {
          delete b.data;
          return;  // Close() woke us
        }
        continue;
      }
      b.used += kept;
    }
    Publish(b);
    if (b.fatal != 0) return;
  }
}

void Dumper::OnAsync(uv_async_t* handle) {
  auto* self = static_cast<Dumper*>(handle->data);
  if (self->closing_ || self->owner_ == nullptr || self->delivering_) return;
  self->delivering_ = true;
  self->Deliver();
  self->delivering_ = false;
}

// Main thread: hands queued blocks to JS, one call each, until paused or empty.
void Dumper::Deliver() {
  for (;;) {
    Block b;
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (paused_ || stop_ || queue_.empty()) return;
      b = queue_.front();
      queue_.pop_front();
      queued_bytes_ -= b.used;
    }
    cv_.notify_one();
    Socket* owner = owner_;
    if (owner == nullptr) {
      delete b.data;
      return;
    }
    owner->Deliver(b.data->data(), b.used, b.overruns, b.skipped, b.fatal);
    Recycle(b.data);
    if (closing_ || owner_ == nullptr) return;  // the callback closed the socket
  }
}

}  // namespace conntrack
