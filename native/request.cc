#include "request.h"
#include "errors.h"
#include "fault_injection.h"
#include "sender.h"
#include "socket.h"

#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <sys/socket.h>
#include <cstring>
#include <string>

namespace conntrack {

size_t MessageSize(size_t len) {
  return MNL_ALIGN(sizeof(struct nlmsghdr)) + MNL_ALIGN(sizeof(struct nfgenmsg)) + MNL_ALIGN(len);
}

size_t PutMessage(std::vector<char>& buf, size_t off, uint16_t type, uint16_t flags, uint8_t family,
                  uint16_t res_id, uint32_t seq, const uint8_t* payload, size_t len) {
  size_t need = MessageSize(len);
  FaultInjection::AllocationPoint();
  if (buf.size() < off + need) buf.resize(off + need);
  memset(buf.data() + off, 0, need);
  struct nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data() + off);
  nlh->nlmsg_type = type;
  nlh->nlmsg_flags = flags;
  nlh->nlmsg_seq = seq;
  auto* nfg = static_cast<struct nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(struct nfgenmsg)));
  nfg->nfgen_family = family;
  nfg->version = NFNETLINK_V0;
  nfg->res_id = htons(res_id);
  if (len > 0) memcpy(mnl_nlmsg_put_extra_header(nlh, len), payload, len);
  return off + nlh->nlmsg_len;
}

int SendDatagram(int fd, const char* data, size_t len) {
  int injected = FaultInjection::SendPoint();
  if (injected != 0) return injected;
  for (;;) {
    ssize_t n = send(fd, data, len, 0);
    if (n >= 0) return 0;
    if (errno != EINTR) return errno;
  }
}

static uint32_t U32Arg(const Napi::Value& v, const char* what) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a number");
  return v.As<Napi::Number>().Uint32Value();
}

// request(type, flags, family, payload?, resId?) -> seq
// `type` is (subsystem << 8) | message, e.g. (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET.
Napi::Value Socket::Request(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  uint16_t type = static_cast<uint16_t>(U32Arg(info[0], "request: type"));
  uint16_t flags = static_cast<uint16_t>(U32Arg(info[1], "request: flags"));
  uint8_t family = static_cast<uint8_t>(U32Arg(info[2], "request: family"));
  const uint8_t* payload = nullptr;
  size_t len = 0;
  if (info[3].IsBuffer()) {
    auto b = info[3].As<Napi::Buffer<uint8_t>>();
    payload = b.Data();
    len = b.Length();
  }
  uint16_t res_id = info[4].IsNumber() ? static_cast<uint16_t>(info[4].As<Napi::Number>().Uint32Value()) : 0;
  if (len > kMaxSend) throw Napi::RangeError::New(env, "request: payload larger than " + std::to_string(kMaxSend) + " bytes");
  thread_local std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  uint32_t seq = ReserveSeqs(1);
  size_t total = PutMessage(buf, 0, type, flags, family, res_id, seq, payload, len);
  int err = Transmit(buf.data(), total);
  // With a sender thread the only failure here is the copy for it (ENOMEM).
  if (err != 0) ThrowErrno(env, sender_ ? "malloc" : "sendmsg", err);
  return Napi::Number::New(env, seq);
}

// requestBatch(type, flags, family, payloads, ends, sparseAcks?) -> first seq
// Sends ends.length messages of one type whose payloads are consecutive slices of
// `payloads` (message i ends at ends[i]); their sequence numbers are consecutive from the
// returned one. Packs as many messages per sendmsg() as fit, so a pipelined bulk operation
// costs one N-API call and a few syscalls.
//
// With sparseAcks, NLM_F_ACK is set only on the last message of each datagram (and
// cleared on the others): netlink_rcv_skb() acks a message that fails whether or not it
// asked, and ctnetlink handles a socket's messages in order inside sendmsg(), so the ack
// closing a datagram also says that every earlier message without an error reply
// succeeded. The kernel then builds, queues and hands over one ack per datagram instead of
// one per message.
//
// Arguments are checked before anything is sent (a TypeError or RangeError means nothing
// was sent). A failure part-way (a send() error, or ENOMEM) throws an Error with `errno`,
// `syscall`, `sent` (items 0 .. sent-1 went to the kernel, and their answers will come)
// and `firstSeq` (their sequence numbers are firstSeq + i); items sent .. ends.length-1
// were not sent.
Napi::Value Socket::RequestBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  uint16_t type = static_cast<uint16_t>(U32Arg(info[0], "requestBatch: type"));
  uint16_t flags = static_cast<uint16_t>(U32Arg(info[1], "requestBatch: flags"));
  uint8_t family = static_cast<uint8_t>(U32Arg(info[2], "requestBatch: family"));
  if (!info[3].IsBuffer()) throw Napi::TypeError::New(env, "requestBatch: payloads must be a Buffer");
  if (!info[4].IsTypedArray() || info[4].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array)
    throw Napi::TypeError::New(env, "requestBatch: ends must be a Uint32Array");
  const bool sparse_acks = info[5].ToBoolean();
  auto payloads = info[3].As<Napi::Buffer<uint8_t>>();
  auto ends = info[4].As<Napi::Uint32Array>();
  size_t count = ends.ElementLength();
  if (count == 0) throw Napi::RangeError::New(env, "requestBatch: ends must not be empty");
  if (count > UINT32_MAX / 2) throw Napi::RangeError::New(env, "requestBatch: too many items");
  size_t prev = 0;
  for (size_t i = 0; i < count; i++) {
    size_t end = ends[i];
    if (end < prev || end > payloads.Length())
      throw Napi::RangeError::New(env, "requestBatch: ends must be increasing offsets into payloads");
    if (end - prev > kMaxSend)
      throw Napi::RangeError::New(env, "requestBatch: item " + std::to_string(i) + " is larger than " +
                                           std::to_string(kMaxSend) + " bytes");
    prev = end;
  }

  const uint32_t first = ReserveSeqs(static_cast<uint32_t>(count));
  size_t sent = 0;      // items handed to the kernel (or to the sender thread)
  size_t packed = 0;    // items in `buf`, not yet sent
  int err = 0;
  const char* syscall = sender_ ? "malloc" : "sendmsg";  // see Request()
  try {
    thread_local std::vector<char> buf(kMaxSend + MNL_SOCKET_BUFFER_SIZE);
    const uint16_t item_flags = sparse_acks ? static_cast<uint16_t>(flags & ~NLM_F_ACK) : flags;
    size_t off = 0;
    size_t last = 0;  // offset of the datagram's last message
    size_t start = 0;
    // Sparse acks: the datagram's last message asks for the ack that closes it.
    auto close_datagram = [&] {
      if (sparse_acks) reinterpret_cast<struct nlmsghdr*>(buf.data() + last)->nlmsg_flags |= NLM_F_ACK;
    };
    for (size_t i = 0; i < count && err == 0; i++) {
      size_t end = ends[i];
      if (off > 0 && off + MessageSize(end - start) > max_send_) {
        close_datagram();
        err = Transmit(buf.data(), off);
        if (err != 0) break;
        sent += packed;
        packed = 0;
        off = 0;
      }
      last = off;
      off = PutMessage(buf, off, type, item_flags, family, 0, first + static_cast<uint32_t>(i), payloads.Data() + start,
                       end - start);
      packed++;
      start = end;
    }
    if (err == 0 && off > 0) {
      close_datagram();
      err = Transmit(buf.data(), off);
      if (err == 0) sent += packed;
    }
  } catch (const std::bad_alloc&) {
    err = ENOMEM;
    syscall = "malloc";
  }
  if (err != 0) {
    Napi::Error e = ErrnoError(env, std::string(syscall) + ": " + strerror(err) + " after " + std::to_string(sent) +
                                        " of " + std::to_string(count) + " requests were sent",
                               syscall, err);
    e.Set("sent", Napi::Number::New(env, static_cast<double>(sent)));
    e.Set("firstSeq", Napi::Number::New(env, first));
    throw e;
  }
  return Napi::Number::New(env, first);
}

// Sends now, or hands a copy to the sender thread when the socket has one. Returns 0 or
// an errno (ENOMEM when the copy cannot be made).
int Socket::Transmit(const char* data, size_t len) {
  if (sender_) return sender_->Enqueue(data, len);
  return SendDatagram(fd_, data, len);
}

}  // namespace conntrack
