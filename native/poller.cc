#include "poller.h"
#include "socket.h"

#include <errno.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <cstring>

namespace conntrack {

// Room kept free before every recvmsg(): larger than any netlink datagram the kernel
// sends us (dump skbs are at most 32 KiB; NLMSG_GOODSIZE is smaller).
static constexpr size_t kMaxDatagram = 64 * 1024;
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

void Poller::Drain() {
  Socket* owner = owner_;
  Napi::Env env = owner->Env();
  if (block_.size() < batch_bytes_ + kMaxDatagram) block_.resize(batch_bytes_ + kMaxDatagram);

  size_t used = 0;
  uint32_t overruns = 0;   // ENOBUFS seen: the kernel dropped messages for this socket
  uint32_t skipped = 0;    // datagrams not from the kernel, or truncated
  int fatal = 0;
  for (int i = 0; i < kMaxDatagramsPerBatch && used < batch_bytes_; i++) {
    struct sockaddr_nl addr;
    struct iovec iov = {block_.data() + used, block_.size() - used};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_name = &addr;
    msg.msg_namelen = sizeof addr;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    ssize_t n = recvmsg(fd_, &msg, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == ENOBUFS) {  // overrun: the socket buffer filled, messages were dropped
        overruns++;
        continue;
      }
      fatal = errno;
      break;
    }
    if ((msg.msg_flags & MSG_TRUNC) || addr.nl_pid != 0) {
      skipped++;  // never hand partial or spoofed (non-kernel) messages to JS
      continue;
    }
    // Keep only the well-formed prefix of the datagram, 4-byte aligned so that JS can walk
    // a batch of several datagrams with NLMSG_ALIGN steps.
    const char* start = block_.data() + used;
    const struct nlmsghdr* nlh = reinterpret_cast<const struct nlmsghdr*>(start);
    int left = static_cast<int>(n);
    while (mnl_nlmsg_ok(nlh, left)) nlh = mnl_nlmsg_next(nlh, &left);
    size_t good = static_cast<size_t>(reinterpret_cast<const char*>(nlh) - start);
    if (good > static_cast<size_t>(n)) good = static_cast<size_t>(n);
    if (good < static_cast<size_t>(n)) skipped++;
    size_t aligned = NLMSG_ALIGN(good);
    memset(block_.data() + used + good, 0, aligned - good);
    used += aligned;
  }

  if (used == 0 && overruns == 0 && skipped == 0 && fatal == 0) return;

  // Raw N-API calls with status checks: while an environment is being torn down (a worker
  // calling process.exit(), say) JS cannot run, and node-addon-api would abort trying to
  // build an Error for the failure. Then the batch is simply dropped with the socket.
  napi_env raw = env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(raw, &scope) != napi_ok) return;
  napi_value argv[4];
  bool ok = true;
  if (used > 0) {
    void* data = nullptr;
    ok = napi_create_buffer_copy(raw, used, block_.data(), &data, &argv[0]) == napi_ok;
  } else {
    ok = napi_get_null(raw, &argv[0]) == napi_ok;
  }
  ok = ok && napi_create_uint32(raw, overruns, &argv[1]) == napi_ok &&
       napi_create_uint32(raw, skipped, &argv[2]) == napi_ok &&
       napi_create_int32(raw, fatal, &argv[3]) == napi_ok;
  if (ok) {
    napi_value recv = owner->Value();
    napi_value fn = owner->on_data_.Value();
    napi_value result;
    napi_status st = napi_make_callback(raw, nullptr, recv, fn, 4, argv, &result);
    if (st == napi_pending_exception) {
      // An exception thrown by the JS callback: report it as uncaught, like any callback.
      napi_value exc;
      if (napi_get_and_clear_last_exception(raw, &exc) == napi_ok) napi_fatal_exception(raw, exc);
    }
  }
  napi_close_handle_scope(raw, scope);
}

}  // namespace conntrack
