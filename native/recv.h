// Receiving one netlink datagram into a batch buffer, shared by the event-loop poller and
// the reader thread: only whole, well-formed messages from the kernel are kept.
#pragma once

#include <cstddef>
#include <cstdint>

namespace conntrack {

// Room the callers keep free before each call: more than any netlink datagram the kernel
// sends us (a dump skb is at most 32 KiB: netlink_recvmsg() caps max_recvmsg_len there).
constexpr size_t kMaxDatagram = 64 * 1024;

struct RecvCounters {
  uint32_t overruns = 0;  // ENOBUFS: the kernel dropped messages for this socket
  uint32_t skipped = 0;   // datagrams not from the kernel, truncated, or malformed
  int fatal = 0;          // a receive error that is not one of the above
  bool reply = false;     // a kept message was NLMSG_DONE or NLMSG_ERROR (an ack or error)
};

enum class RecvStatus { kData, kAgain, kFatal };

// Receives one datagram (non-blocking) into dst[0, cap). On kData, *kept is the number of
// bytes appended: the well-formed prefix, zero-padded to 4 bytes so that a batch of
// datagrams can be walked with NLMSG_ALIGN steps (0 for a skipped datagram or an
// overrun). Never writes at or past dst + cap: the datagram is received into the largest
// multiple of 4 bytes that fits, so its padding fits too (a datagram longer than that is
// truncated by the kernel, and skipped).
RecvStatus RecvOne(int fd, char* dst, size_t cap, size_t* kept, RecvCounters* counters);

}  // namespace conntrack
