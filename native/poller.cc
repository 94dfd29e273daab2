#include "poller.h"
#include "fault_injection.h"
#include "socket.h"
#include "recv.h"

#include <errno.h>
#include <new>

namespace conntrack {

// Upper bound on datagrams per wake-up, so one busy socket cannot starve the loop.
static constexpr int kMaxDatagramsPerBatch = 4096;

Poller::Poller(uv_loop_t* loop, int fd, Socket* owner) : fd_(fd), owner_(owner) {
  uv_poll_init(loop, &handle_, fd);
  handle_.data = this;
}

void Poller::Start(size_t batch_bytes) {
  if (closing_) return;
  if (batch_bytes >= 4096) batch_bytes_ = batch_bytes;
  if (!active_) {
    uv_poll_start(&handle_, UV_READABLE, OnPoll);
    active_ = true;
  }
}

void Poller::Stop() {
  if (active_ && !closing_) uv_poll_stop(&handle_);
  active_ = false;
}

void Poller::Close() {
  if (closing_) return;
  Stop();
  closing_ = true;
  owner_ = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&handle_), OnClose);
}

void Poller::OnClose(uv_handle_t* handle) {
  delete static_cast<Poller*>(handle->data);
}

void Poller::OnPoll(uv_poll_t* handle, int status, int events) {
  auto* self = static_cast<Poller*>(handle->data);
  if (self->closing_ || self->owner_ == nullptr) return;
  if (status < 0 && self->active_) {
    // A pending socket error (ENOBUFS after an overrun) shows as POLLERR, and libuv then
    // stops the handle and reports UV_EBADF. The socket is fine: re-arm, and let Drain()
    // read the error (which clears it) and the messages behind it.
    uv_poll_start(&self->handle_, UV_READABLE, OnPoll);
  }
  self->Drain();
}

// Reads up to a batch and hands it to JS. A batch buffer that cannot be allocated is
// reported to JS as ENOMEM (an exception must not escape a libuv callback).
void Poller::Drain() {
  Socket* owner = owner_;
  try {
    FaultInjection::AllocationPoint();
    if (block_.size() < batch_bytes_ + kMaxDatagram) block_.resize(batch_bytes_ + kMaxDatagram);
  } catch (const std::bad_alloc&) {
    owner->Deliver(nullptr, 0, 0, 0, ENOMEM);
    return;
  }
  size_t used = 0;
  RecvCounters c;
  for (int i = 0; i < kMaxDatagramsPerBatch && used < batch_bytes_; i++) {
    size_t kept = 0;
    RecvStatus st = RecvOne(fd_, block_.data() + used, block_.size() - used, &kept, &c);
    if (st != RecvStatus::kData) break;
    used += kept;
  }
  if (used == 0 && c.overruns == 0 && c.skipped == 0 && c.fatal == 0) return;
  // Send failures first: the requests of a datagram the sender thread could not send must
  // fail before a later reply is read as closing them (see requestBatch's sparse acks).
  if (used > 0) {
    owner->ReportSendFailures();
    if (owner_ == nullptr || closing_) return;  // JS closed the socket meanwhile
  }
  owner->Deliver(block_.data(), used, c.overruns, c.skipped, c.fatal);
}

}  // namespace conntrack
