#include "recv.h"

#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <climits>
#include <cstdint>
#include <cstring>

namespace conntrack {

RecvStatus RecvOne(int fd, char* dst, size_t cap, size_t* kept, RecvCounters* counters) {
  *kept = 0;
  // Room for the datagram and its padding: a multiple of 4 (NLMSG_ALIGNTO), and at most
  // INT_MAX so that the message walk below can use libmnl's int length.
  size_t room = cap & ~static_cast<size_t>(NLMSG_ALIGNTO - 1);
  if (room > static_cast<size_t>(INT_MAX)) room = static_cast<size_t>(INT_MAX) & ~static_cast<size_t>(NLMSG_ALIGNTO - 1);
  struct sockaddr_nl addr;
  addr.nl_pid = UINT32_MAX;  // rejected below unless the kernel writes the sender's address
  socklen_t addr_len = sizeof addr;
  ssize_t n;
  do {
    // recvfrom() needs no msghdr or iovec copied in; MSG_TRUNC makes it return the
    // datagram's whole length, so a datagram longer than `room` shows as n > room. Called
    // as a raw system call: in a multi-threaded process glibc wraps recvfrom() in pthread
    // cancellation bookkeeping, which costs a few percent of a small event's receive and
    // which these threads (never cancelled) do not need.
    n = syscall(SYS_recvfrom, fd, dst, room, MSG_DONTWAIT | MSG_TRUNC, &addr, &addr_len);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return RecvStatus::kAgain;
    if (errno == ENOBUFS) {  // overrun: reported once, then reading goes on
      counters->overruns++;
      return RecvStatus::kData;
    }
    counters->fatal = errno;
    return RecvStatus::kFatal;
  }
  size_t got = static_cast<size_t>(n);
  if (got > room || addr_len < sizeof addr || addr.nl_pid != 0) {
    counters->skipped++;  // never hand partial or spoofed (non-kernel) messages to JS
    return RecvStatus::kData;
  }
  const struct nlmsghdr* nlh = reinterpret_cast<const struct nlmsghdr*>(dst);
  int left = static_cast<int>(got);
  while (mnl_nlmsg_ok(nlh, left)) {
    if (nlh->nlmsg_type == NLMSG_DONE || nlh->nlmsg_type == NLMSG_ERROR) counters->reply = true;
    nlh = mnl_nlmsg_next(nlh, &left);
  }
  size_t good = static_cast<size_t>(reinterpret_cast<const char*>(nlh) - dst);
  if (good > got) good = got;
  if (good < got) counters->skipped++;
  size_t aligned = NLMSG_ALIGN(good);  // <= room, since good <= room and room is aligned
  memset(dst + good, 0, aligned - good);
  *kept = aligned;
  return RecvStatus::kData;
}

}  // namespace conntrack
