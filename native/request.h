// Building ctnetlink requests with libmnl: the netlink and nfgenmsg headers come from here,
// the attribute payload is encoded by lib/ (which owns validation and meaning).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace conntrack {

// Largest datagram we send: sendmsg() on netlink refuses anything over sk_sndbuf - 32
// (net/netlink/af_netlink.c), and the default sndbuf is 212992.
constexpr size_t kMaxSend = 128 * 1024;

// Bytes one message with a payload of `len` takes (nlmsghdr + nfgenmsg + payload, aligned).
size_t MessageSize(size_t len);

// Appends one message to `buf` at `off` (growing it); returns the new offset.
size_t PutMessage(std::vector<char>& buf, size_t off, uint16_t type, uint16_t flags, uint8_t family,
                  uint16_t res_id, uint32_t seq, const uint8_t* payload, size_t len);

// Sends one datagram; returns 0 or the errno (netlink sends are all-or-nothing).
int SendDatagram(int fd, const char* data, size_t len);

}  // namespace conntrack
