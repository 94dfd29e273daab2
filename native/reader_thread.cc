#include "reader_thread.h"
#include "fault_injection.h"
#include "recv.h"
#include "socket.h"
#include "start_thread.h"

#include <errno.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <linux/netlink.h>
#include <ctime>
#include <new>

namespace conntrack {

// The thread stops reading while blocks of this much memory wait for JS. A block's whole
// allocation counts, not just its used part: a socket that keeps delivering a few events at
// a time (or only overrun reports) while JS is busy would otherwise queue hundreds of
// mostly empty blocks.
static constexpr size_t kMaxQueued = 4 << 20;
// Largest batch handed to JS in one call.
static constexpr size_t kMaxBatch = 256 << 10;
// Blocks kept for reuse.
static constexpr size_t kMaxFreeBlocks = 24;

// Under sustained load (the previous block went out less than kBusyNs ago) a block that has
// data waits up to kLingerNs for more before it is handed over, so one JS call carries many
// events instead of one or two. Replies (a block ending in NLMSG_DONE or an error/ack) and
// quiet sockets are handed over at once. Such waits are naps of at most kNapNs that the
// socket does not interrupt: what arrives meanwhile is read in one go after each. The
// default receive buffer (about 160 events) lasts through a nap, timer slack included, up
// to about a million events a second; at such rates the reader falls behind anyway (each
// receive costs it close to a microsecond).
static constexpr int64_t kLingerNs = 300 * 1000;
static constexpr int64_t kBusyNs = 2 * 1000 * 1000;
static constexpr int64_t kNapNs = 100 * 1000;

static int64_t NowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

ReaderThread::ReaderThread(uv_loop_t* loop, int fd, Socket* owner) : fd_(fd), owner_(owner) {
  uv_async_init(loop, &async_, OnAsync);
  async_.data = this;
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) wake_err_ = errno;
  UpdateRef();
}

void ReaderThread::UpdateRef() {
  // Like a stopped uv_poll, a paused reader must not keep the event loop alive.
  if (closing_) return;
  if (user_ref_ && !paused_) uv_ref(reinterpret_cast<uv_handle_t*>(&async_));
  else uv_unref(reinterpret_cast<uv_handle_t*>(&async_));
}

void ReaderThread::Ref() {
  user_ref_ = true;
  UpdateRef();
}

void ReaderThread::Unref() {
  user_ref_ = false;
  UpdateRef();
}

int ReaderThread::Start(size_t batch_bytes) {
  if (closing_) return 0;
  if (!started_) {
    int err = StartThread(&thread_, [this] { Run(); });
    if (err != 0) return err;
    started_ = true;
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (batch_bytes >= 4096) batch_bytes_ = batch_bytes < kMaxBatch ? batch_bytes : kMaxBatch;
    paused_ = false;
  }
  cv_.notify_one();
  UpdateRef();
  // Blocks may have queued up while paused.
  uv_async_send(&async_);
  return 0;
}

void ReaderThread::Stop() {
  std::lock_guard<std::mutex> lk(mu_);
  paused_ = true;
  UpdateRef();
}

void ReaderThread::Close() {
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

// Blocks are reused: a fresh mapping costs a page fault per 4 KB as it fills. The ones
// not kept are unmapped, so their memory leaves the process.
void ReaderThread::Recycle(PageBuffer* data) {
  if (data == nullptr) return;
  std::lock_guard<std::mutex> lk(mu_);
  if (free_.size() < kMaxFreeBlocks) {
    try {
      free_.push_back(data);
      return;
    } catch (const std::bad_alloc&) {
    }
  }
  delete data;
}

void ReaderThread::OnClose(uv_handle_t* handle) {
  auto* self = static_cast<ReaderThread*>(handle->data);
  for (Block& b : self->queue_) delete b.data;
  for (auto* d : self->free_) delete d;
  delete self;
}

size_t ReaderThread::BlockBytes(const Block& b) {
  return b.data ? b.data->size() : 0;
}

// True while JS has blocks still to take and is taking them (a paused reader hands its
// partial block over and waits for Start() instead of looking back after every nap).
bool ReaderThread::Backlogged() {
  std::lock_guard<std::mutex> lk(mu_);
  return !paused_ && !stop_ && !queue_.empty();
}

void ReaderThread::Publish(Block b) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    queue_.push_back(b);  // may throw std::bad_alloc: Run() owns b.data until here
    queued_bytes_ += BlockBytes(b);
  }
  uv_async_send(&async_);
}

// An allocation failure on this thread must not abort the process: the thread stops and
// the socket reports ENOMEM to JS (which fails what waits on it).
void ReaderThread::Run() {
  try {
    Loop();
  } catch (const std::bad_alloc&) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      thread_error_ = ENOMEM;
    }
    uv_async_send(&async_);
  }
}

// Fills blocks of whole, well-formed datagrams and queues them.
void ReaderThread::Loop() {
  for (;;) {
    size_t batch;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [this] { return stop_ || (!paused_ && queued_bytes_ < kMaxQueued); });
      if (stop_) return;
      batch = batch_bytes_;
    }
    PageBuffer* data = nullptr;
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (!free_.empty()) {
        data = free_.back();
        free_.pop_back();
      }
    }
    try {
      FaultInjection::AllocationPoint();
      if (data != nullptr && data->size() < batch + kMaxDatagram) {
        delete data;  // made for a smaller batch
        data = nullptr;
      }
      if (data == nullptr) data = PageBuffer::New(batch + kMaxDatagram);
    } catch (const std::bad_alloc&) {
      delete data;
      throw;
    }
    Block b{data, 0, 0, 0, 0};
    PageBuffer& block = *b.data;
    int64_t linger_until = 0;  // set once the block has data and the socket is busy
    bool reply = false;        // the block holds a reply (NLMSG_DONE, an ack or an error)
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
      struct timespec nap_ts = {0, 0};
      bool nap = false;  // sleeping a moment while datagrams gather in the socket
      if (st == RecvStatus::kAgain) {
        if (b.used > 0 || b.overruns > 0 || b.skipped > 0) {
          // Replies go at once.
          if (reply) break;
          // While JS still has blocks to work through, handing this one over would only queue
          // a mostly empty block (each counts its whole allocation against kMaxQueued): it
          // goes on filling, looking back after each nap. Otherwise what we have is handed
          // over, unless the socket is busy and a short wait may add more.
          int64_t nap_ns = kNapNs;
          if (!Backlogged()) {
            if (b.used == 0) break;
            int64_t now = NowNs();
            if (linger_until == 0) {
              if (now - last_publish_ns_ > kBusyNs) break;
              linger_until = now + kLingerNs;
            }
            if (now >= linger_until) break;
            if (linger_until - now < nap_ns) nap_ns = linger_until - now;
          }
          nap_ts.tv_sec = 0;
          nap_ts.tv_nsec = static_cast<long>(nap_ns);
          nap = true;
        }
        // A nap watches only the wake fd: datagrams that arrive meanwhile gather in the
        // socket and are read together afterwards, instead of waking this thread one by one.
        struct pollfd fds[2] = {{fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
        int r = nap ? ppoll(&fds[1], 1, &nap_ts, nullptr) : poll(fds, 2, -1);
        if (r == 0) continue;  // napped: read what has gathered
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
      if (c.reply) reply = true;
    }
    last_publish_ns_ = NowNs();
    try {
      Publish(b);
    } catch (const std::bad_alloc&) {
      delete b.data;
      throw;
    }
    if (b.fatal != 0) return;
  }
}

void ReaderThread::OnAsync(uv_async_t* handle) {
  auto* self = static_cast<ReaderThread*>(handle->data);
  if (self->closing_ || self->owner_ == nullptr || self->delivering_) return;
  self->delivering_ = true;
  self->Deliver();
  self->delivering_ = false;
}

// Main thread: hands queued blocks to JS, one call each, until paused or empty; then the
// error that stopped the thread, if any (once).
void ReaderThread::Deliver() {
  for (;;) {
    Block b;
    int thread_error = 0;
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (paused_ || stop_) return;
      if (queue_.empty()) {
        thread_error = thread_error_;
        thread_error_ = 0;
        if (thread_error == 0) return;
        b = Block{nullptr, 0, 0, 0, thread_error};
      } else {
        b = queue_.front();
        queue_.pop_front();
        queued_bytes_ -= BlockBytes(b);
      }
    }
    cv_.notify_one();
    Socket* owner = owner_;
    if (owner == nullptr) {
      delete b.data;
      return;
    }
    if (b.used > 0) {
      owner->ReportSendFailures();  // as in poller.cc: failed sends before later replies
      if (closing_ || owner_ == nullptr) {
        delete b.data;
        return;
      }
    }
    owner->Deliver(b.data ? b.data->data() : nullptr, b.used, b.overruns, b.skipped, b.fatal);
    Recycle(b.data);
    if (thread_error != 0 || closing_ || owner_ == nullptr) return;  // the callback closed the socket
  }
}

}  // namespace conntrack
