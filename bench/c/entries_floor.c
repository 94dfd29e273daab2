/*
 * The floor for bench/entries.bench.js: a minimal libmnl program that creates, updates or
 * deletes N IPv4 UDP entries with the same pipelining as the library (a window of
 * requests in flight, many messages packed per sendmsg(), acks matched by sequence).
 * `update-matching` is the floor for updateMatching(): it dumps the IPv4 table on one
 * socket and, as each batch arrives, updates the mark of every UDP entry in it by its
 * original tuple on a second socket, within the same window (N is ignored; all match).
 *
 * Usage: entries_floor create|update|delete|update-matching N [window] [mark]
 * Prints: "<ok> <errors> <seconds> <cpu seconds (user + system, getrusage)>"
 * Entry i: udp 10.0.0.1:(1 + i % 60000) -> 10.0.0.2:(1000 + i / 60000).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#define SEND_MAX (128 * 1024)

/* CPU time of the whole process so far (user + system): the kernel's work inside
 * sendmsg() and recvmsg() is system time. */
static double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

enum { OP_CREATE, OP_UPDATE, OP_DELETE };

static void put_tuple(struct nlmsghdr *nlh, int type, uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport) {
  struct nlattr *t = mnl_attr_nest_start(nlh, type);
  struct nlattr *ip = mnl_attr_nest_start(nlh, CTA_TUPLE_IP);
  mnl_attr_put_u32(nlh, CTA_IP_V4_SRC, src);
  mnl_attr_put_u32(nlh, CTA_IP_V4_DST, dst);
  mnl_attr_nest_end(nlh, ip);
  struct nlattr *pr = mnl_attr_nest_start(nlh, CTA_TUPLE_PROTO);
  mnl_attr_put_u8(nlh, CTA_PROTO_NUM, IPPROTO_UDP);
  mnl_attr_put_u16(nlh, CTA_PROTO_SRC_PORT, htons(sport));
  mnl_attr_put_u16(nlh, CTA_PROTO_DST_PORT, htons(dport));
  mnl_attr_nest_end(nlh, pr);
  mnl_attr_nest_end(nlh, t);
}

static size_t build(char *buf, int op, unsigned i, uint32_t seq, uint32_t mark) {
  struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
  int msg = op == OP_DELETE ? IPCTNL_MSG_CT_DELETE : IPCTNL_MSG_CT_NEW;
  nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | msg;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (op == OP_CREATE ? NLM_F_CREATE | NLM_F_EXCL : 0);
  nlh->nlmsg_seq = seq;
  struct nfgenmsg *nfg = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfg));
  nfg->nfgen_family = AF_INET;
  nfg->version = NFNETLINK_V0;
  nfg->res_id = 0;
  uint32_t src = htonl(0x0a000001), dst = htonl(0x0a000002);
  uint16_t sport = 1 + i % 60000, dport = 1000 + i / 60000;
  put_tuple(nlh, CTA_TUPLE_ORIG, src, dst, sport, dport);
  if (op == OP_CREATE) {
    put_tuple(nlh, CTA_TUPLE_REPLY, dst, src, dport, sport);
    mnl_attr_put_u32(nlh, CTA_TIMEOUT, htonl(600));
  }
  if (op != OP_DELETE) mnl_attr_put_u32(nlh, CTA_MARK, htonl(mark));
  return nlh->nlmsg_len;
}

/* update-matching: one update per dumped UDP entry, copying its CTA_TUPLE_ORIG. */
static size_t build_from(char *buf, const struct nlmsghdr *entry, uint32_t seq, uint32_t mark) {
  const struct nlattr *orig = NULL, *a;
  int udp = 0;
  mnl_attr_for_each(a, entry, sizeof(struct nfgenmsg)) {
    if (mnl_attr_get_type(a) == CTA_TUPLE_ORIG) orig = a;
  }
  if (!orig) return 0;
  const struct nlattr *t;
  mnl_attr_for_each_nested(t, orig) {
    if (mnl_attr_get_type(t) != CTA_TUPLE_PROTO) continue;
    const struct nlattr *p;
    mnl_attr_for_each_nested(p, t) if (mnl_attr_get_type(p) == CTA_PROTO_NUM && mnl_attr_get_u8(p) == IPPROTO_UDP) udp = 1;
  }
  if (!udp) return 0;
  struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  nlh->nlmsg_seq = seq;
  struct nfgenmsg *nfg = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfg));
  nfg->nfgen_family = AF_INET;
  nfg->version = NFNETLINK_V0;
  nfg->res_id = 0;
  memcpy((char *)nlh + nlh->nlmsg_len, orig, orig->nla_len);
  nlh->nlmsg_len += MNL_ALIGN(orig->nla_len);
  mnl_attr_put_u32(nlh, CTA_MARK, htonl(mark));
  return nlh->nlmsg_len;
}

/* Counts the acks in one receive; returns how many arrived. */
static unsigned read_acks(struct mnl_socket *nl, char *rbuf, size_t size, int flags, unsigned portid, unsigned *ok, unsigned *errs) {
  ssize_t len = recv(mnl_socket_get_fd(nl), rbuf, size, flags);
  if (len < 0) return 0;
  unsigned acked = 0;
  const struct nlmsghdr *nlh = (const struct nlmsghdr *)rbuf;
  int left = (int)len;
  while (mnl_nlmsg_ok(nlh, left)) {
    if (nlh->nlmsg_pid == portid && nlh->nlmsg_type == NLMSG_ERROR) {
      const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
      if (e->error == 0) (*ok)++;
      else (*errs)++;
      acked++;
    }
    nlh = mnl_nlmsg_next(nlh, &left);
  }
  return acked;
}

static int update_matching(unsigned window, uint32_t mark) {
  struct mnl_socket *dump = mnl_socket_open(NETLINK_NETFILTER);
  struct mnl_socket *mod = mnl_socket_open(NETLINK_NETFILTER);
  if (!dump || !mod || mnl_socket_bind(dump, 0, MNL_SOCKET_AUTOPID) < 0 || mnl_socket_bind(mod, 0, MNL_SOCKET_AUTOPID) < 0) {
    perror("mnl_socket");
    return 1;
  }
  int rcv = 4 << 20;
  for (int i = 0; i < 2; i++) {
    int fd = mnl_socket_get_fd(i ? mod : dump);
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof(rcv)) < 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
  }
  unsigned dport = mnl_socket_get_portid(dump), mport = mnl_socket_get_portid(mod);
  static char dbuf[1 << 20], sbuf[SEND_MAX + 4096], rbuf[1 << 20];
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  uint32_t seq0 = (uint32_t)time(NULL);

  struct nlmsghdr *req = mnl_nlmsg_put_header(dbuf);
  req->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
  req->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req->nlmsg_seq = seq0;
  struct nfgenmsg *nfg = mnl_nlmsg_put_extra_header(req, sizeof(*nfg));
  nfg->nfgen_family = AF_INET;
  nfg->version = NFNETLINK_V0;
  if (mnl_socket_sendto(dump, req, req->nlmsg_len) < 0) {
    perror("sendto");
    return 1;
  }
  unsigned sent = 0, acked = 0, ok = 0, errs = 0;
  int done = 0;
  while (!done) {
    ssize_t len = mnl_socket_recvfrom(dump, dbuf, sizeof(dbuf));
    if (len < 0) {
      perror("recvfrom");
      return 1;
    }
    const struct nlmsghdr *nlh = (const struct nlmsghdr *)dbuf;
    int left = (int)len;
    size_t off = 0;
    for (; mnl_nlmsg_ok(nlh, left); nlh = mnl_nlmsg_next(nlh, &left)) {
      if (nlh->nlmsg_pid != dport) continue;
      if (nlh->nlmsg_type == NLMSG_DONE || nlh->nlmsg_type == NLMSG_ERROR) {
        done = 1;
        break;
      }
      size_t l = build_from(sbuf + off, nlh, seq0 + 1 + sent, mark);
      if (!l) continue;
      off += l;
      sent++;
      if (off + 512 >= SEND_MAX || sent - acked >= window) {
        if (mnl_socket_sendto(mod, sbuf, off) < 0) {
          perror("sendto");
          return 1;
        }
        off = 0;
        while (sent - acked >= window) acked += read_acks(mod, rbuf, sizeof(rbuf), 0, mport, &ok, &errs);
      }
    }
    if (off && mnl_socket_sendto(mod, sbuf, off) < 0) {
      perror("sendto");
      return 1;
    }
    // Take the acks already there, without waiting, before reading the next dump batch.
    unsigned got;
    while ((got = read_acks(mod, rbuf, sizeof(rbuf), MSG_DONTWAIT, mport, &ok, &errs)) > 0) acked += got;
  }
  while (acked < sent) acked += read_acks(mod, rbuf, sizeof(rbuf), 0, mport, &ok, &errs);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  printf("%u %u %.6f %.6f\n", ok, errs, (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9, cpu_seconds());
  mnl_socket_close(dump);
  mnl_socket_close(mod);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s create|update|delete|update-matching N [window] [mark]\n", argv[0]);
    return 2;
  }
  if (!strcmp(argv[1], "update-matching"))
    return update_matching(argc > 3 ? strtoul(argv[3], NULL, 10) : 1024, argc > 4 ? strtoul(argv[4], NULL, 0) : 1);
  int op = !strcmp(argv[1], "create") ? OP_CREATE : !strcmp(argv[1], "update") ? OP_UPDATE : OP_DELETE;
  unsigned n = strtoul(argv[2], NULL, 10);
  unsigned window = argc > 3 ? strtoul(argv[3], NULL, 10) : 1024;
  uint32_t mark = argc > 4 ? strtoul(argv[4], NULL, 0) : 1;

  struct mnl_socket *nl = mnl_socket_open(NETLINK_NETFILTER);
  if (!nl || mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
    perror("mnl_socket");
    return 1;
  }
  int rcv = 4 << 20;  // what Conntrack.open() asks for
  if (setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof(rcv)) < 0)
    setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
  unsigned portid = mnl_socket_get_portid(nl);

  static char sbuf[SEND_MAX + 4096];
  static char rbuf[1 << 20];
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  uint32_t seq0 = (uint32_t)time(NULL);
  unsigned sent = 0, acked = 0, ok = 0, errs = 0;
  while (acked < n) {
    // Fill the window, packing as many messages per sendmsg() as fit.
    while (sent < n && sent - acked < window) {
      size_t off = 0;
      while (sent < n && sent - acked < window && off + 512 < SEND_MAX) {
        off += build(sbuf + off, op, sent, seq0 + sent, mark);
        sent++;
      }
      if (mnl_socket_sendto(nl, sbuf, off) < 0) {
        perror("sendto");
        return 1;
      }
    }
    ssize_t len = mnl_socket_recvfrom(nl, rbuf, sizeof(rbuf));
    if (len < 0) {
      perror("recvfrom");
      return 1;
    }
    const struct nlmsghdr *nlh = (const struct nlmsghdr *)rbuf;
    int left = (int)len;
    while (mnl_nlmsg_ok(nlh, left)) {
      if (nlh->nlmsg_pid == portid && nlh->nlmsg_type == NLMSG_ERROR) {
        const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
        if (e->error == 0) ok++;
        else if (errs++ == 0) fprintf(stderr, "entries_floor: first error: %s\n", strerror(-e->error));
        acked++;
      }
      nlh = mnl_nlmsg_next(nlh, &left);
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  printf("%u %u %.6f %.6f\n", ok, errs, (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9, cpu_seconds());
  mnl_socket_close(nl);
  return 0;
}
