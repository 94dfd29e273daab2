/*
 * The floor for bench/entries.bench.js: a minimal libmnl program that creates, updates or
 * deletes N IPv4 UDP entries with the same pipelining as the library (a window of
 * requests in flight, many messages packed per sendmsg(), acks matched by sequence).
 *
 * Usage: entries_floor create|update|delete N [window] [mark]
 * Prints: "<ok> <errors> <seconds>"
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
#include <time.h>

#define SEND_MAX (128 * 1024)

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

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s create|update|delete N [window] [mark]\n", argv[0]);
    return 2;
  }
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
        else errs++;
        acked++;
      }
      nlh = mnl_nlmsg_next(nlh, &left);
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  printf("%u %u %.6f\n", ok, errs, (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
  mnl_socket_close(nl);
  return 0;
}
