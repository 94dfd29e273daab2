#include "request.h"
#include "socket.h"
#include "sender.h"

#include <errno.h>
#include <linux/netfilter/nfnetlink.h>
#include <sys/socket.h>
#include <cstring>
#include <vector>

namespace conntrack {

// Largest datagram we send: sendmsg() on netlink refuses anything over sk_sndbuf - 32
// (net/netlink/af_netlink.c), and the default sndbuf is 212992.
static constexpr size_t kMaxSend = 128 * 1024;

// Appends one message to `buf` at `off`; returns the new offset.
static size_t PutMessage(std::vector<char>& buf, size_t off, uint16_t type, uint16_t flags,
                         uint8_t family, uint16_t res_id, uint32_t seq, const uint8_t* payload,
                         size_t len) {
  size_t need = MNL_ALIGN(sizeof(struct nlmsghdr)) + MNL_ALIGN(sizeof(struct nfgenmsg)) + MNL_ALIGN(len);
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

static void SendAll(Napi::Env env, int fd, const char* data, size_t len) {
  for (;;) {
    ssize_t n = send(fd, data, len, 0);
    if (n >= 0) return;  // netlink sends are all-or-nothing datagrams
    if (errno == EINTR) continue;
    ThrowErrno(env, "sendmsg", errno);
  }
}

// request(type, flags, family, payload?, resId?) -> seq
// `type` is (subsystem << 8) | message, e.g. (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET.
Napi::Value Socket::Request(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  uint16_t type = static_cast<uint16_t>(info[0].As<Napi::Number>().Uint32Value());
  uint16_t flags = static_cast<uint16_t>(info[1].As<Napi::Number>().Uint32Value());
  uint8_t family = static_cast<uint8_t>(info[2].As<Napi::Number>().Uint32Value());
  const uint8_t* payload = nullptr;
  size_t len = 0;
  if (info[3].IsBuffer()) {
    auto b = info[3].As<Napi::Buffer<uint8_t>>();
    payload = b.Data();
    len = b.Length();
  }
  uint16_t res_id = info[4].IsNumber() ? static_cast<uint16_t>(info[4].As<Napi::Number>().Uint32Value()) : 0;
  if (len > kMaxSend) throw Napi::RangeError::New(env, "request payload too large");
  thread_local std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  uint32_t seq = NextSeq();
  size_t total = PutMessage(buf, 0, type, flags, family, res_id, seq, payload, len);
  Transmit(env, buf.data(), total);
  return Napi::Number::New(env, seq);
}

// requestBatch(type, flags, family, payloads, ends) -> first seq
// Sends ends.length messages of one type whose payloads are consecutive slices of
// `payloads` (message i ends at ends[i]); their sequence numbers are consecutive from the
// returned one. Packs as many messages per sendmsg() as fit, so a pipelined bulk operation
// costs one N-API call and a few syscalls.
Napi::Value Socket::RequestBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CheckOpen(env);
  uint16_t type = static_cast<uint16_t>(info[0].As<Napi::Number>().Uint32Value());
  uint16_t flags = static_cast<uint16_t>(info[1].As<Napi::Number>().Uint32Value());
  uint8_t family = static_cast<uint8_t>(info[2].As<Napi::Number>().Uint32Value());
  auto payloads = info[3].As<Napi::Buffer<uint8_t>>();
  auto ends = info[4].As<Napi::Uint32Array>();
  size_t count = ends.ElementLength();
  thread_local std::vector<char> buf(kMaxSend + MNL_SOCKET_BUFFER_SIZE);
  uint32_t first = 0;
  size_t off = 0;
  size_t start = 0;
  for (size_t i = 0; i < count; i++) {
    size_t end = ends[i];
    if (end < start || end > payloads.Length())
      throw Napi::RangeError::New(env, "requestBatch: ends must be increasing offsets into payloads");
    uint32_t seq = NextSeq();
    if (i == 0) first = seq;
    if (i > 0 && seq != first + i) throw Napi::RangeError::New(env, "requestBatch: sequence wrapped");
    if (off > 0 && off + (end - start) + 64 > max_send_) {
      Transmit(env, buf.data(), off);
      off = 0;
    }
    off = PutMessage(buf, off, type, flags, family, 0, seq, payloads.Data() + start, end - start);
    start = end;
  }
  if (off > 0) Transmit(env, buf.data(), off);
  return Napi::Number::New(env, first);
}

// Sends now, or hands a copy to the sender thread when the socket has one.
void Socket::Transmit(Napi::Env env, const char* data, size_t len) {
  if (sender_) {
    sender_->Enqueue(std::vector<char>(data, data + len));
    return;
  }
  SendAll(env, fd_, data, len);
}

void InitRequest(Napi::Env env, Napi::Object exports) {
  exports.Set("NLMSG_HDRLEN", Napi::Number::New(env, MNL_NLMSG_HDRLEN));
  exports.Set("NFGENMSG_LEN", Napi::Number::New(env, MNL_ALIGN(sizeof(struct nfgenmsg))));
  exports.Set("MAX_SEND", Napi::Number::New(env, kMaxSend));
}

}  // namespace conntrack
