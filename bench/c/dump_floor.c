/*
 * The floor for the dump benchmark: the least work a program can do to read the whole
 * conntrack table over ctnetlink with libmnl. Opens NETLINK_NETFILTER, sends one
 * IPCTNL_MSG_CT_GET dump request (AF_UNSPEC: both families), receives with
 * mnl_socket_recvfrom() and runs mnl_cb_run() with a callback that only counts messages.
 *
 * Usage: dump_floor [repeat]   (prints "<count> <seconds>" for the fastest of `repeat` runs)
 * Run it inside the namespace to measure (nsenter --net=...).
 */
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static int count_cb(const struct nlmsghdr *nlh, void *data) {
  (void)nlh;
  (*(unsigned long *)data)++;
  return MNL_CB_OK;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static unsigned long dump_once(void) {
  static char buf[32768]; /* a dump datagram is at most 32 KiB (MNL_SOCKET_DUMP_SIZE in newer libmnl) */
  struct mnl_socket *nl = mnl_socket_open(NETLINK_NETFILTER);
  if (!nl || mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
    perror("mnl_socket");
    exit(1);
  }
  unsigned int portid = mnl_socket_get_portid(nl);
  unsigned int seq = (unsigned int)time(NULL);
  struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  nlh->nlmsg_seq = seq;
  struct nfgenmsg *nfg = mnl_nlmsg_put_extra_header(nlh, sizeof *nfg);
  nfg->nfgen_family = AF_UNSPEC;
  nfg->version = NFNETLINK_V0;
  nfg->res_id = 0;
  if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
    perror("sendto");
    exit(1);
  }
  unsigned long n = 0;
  int ret;
  for (;;) {
    ret = mnl_socket_recvfrom(nl, buf, sizeof buf);
    if (ret <= 0) break;
    ret = mnl_cb_run(buf, ret, seq, portid, count_cb, &n);
    if (ret <= MNL_CB_STOP) break;
  }
  if (ret < 0) {
    perror("dump");
    exit(1);
  }
  mnl_socket_close(nl);
  return n;
}

int main(int argc, char **argv) {
  int repeat = argc > 1 ? atoi(argv[1]) : 1;
  double best = 1e9;
  unsigned long n = 0;
  for (int i = 0; i < repeat; i++) {
    double t0 = now();
    n = dump_once();
    double t = now() - t0;
    if (t < best) best = t;
  }
  printf("%lu %.6f\n", n, best);
  return 0;
}
