#include "recv.h"

#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <climits>
#include <cstring>

namespace conntrack {

RecvStatus RecvOne(int fd, char* dst, size_t cap, size_t* kept, RecvCounters* counters) {
  *kept = 0;
  // Room for the datagram and its padding: a multiple of 4 (NLMSG_ALIGNTO), and at most
  // INT_MAX so that the message walk below can use libmnl's int length.
  size_t room = cap & ~static_cast<size_t>(NLMSG_ALIGNTO - 1);
  if (room > static_cast<size_t>(INT_MAX)) room = static_cast<size_t>(INT_MAX) & ~static_cast<size_t>(NLMSG_ALIGNTO - 1);
  struct sockaddr_nl addr;
  struct iovec iov = {dst, room};
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_name = &addr;
  msg.msg_namelen = sizeof addr;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  ssize_t n;
  do {
    n = recvmsg(fd, &msg, MSG_DONTWAIT);
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
  if ((msg.msg_flags & MSG_TRUNC) || addr.nl_pid != 0 || got > room) {
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
