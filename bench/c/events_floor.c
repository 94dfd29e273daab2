/*
 * Floor for the events benchmark: a minimal libmnl conntrack event listener.
 * Subscribes to NFNLGRP_CONNTRACK_NEW with a forced receive buffer, prints "ready", waits
 * for a line on stdin (meanwhile the kernel queues events), then drains until it has seen
 * `count` events, parsing each message's top-level attributes (as a real listener must),
 * and prints: events seconds cpu_seconds drops.
 * With COUNT 0 (the flood mode) it reads until a second line arrives on stdin instead.
 * RCVBUF_BYTES 0 keeps the default receive buffer.
 * Usage: events_floor COUNT RCVBUF_BYTES
 */
#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#ifndef SO_MEMINFO
#define SO_MEMINFO 55
#endif

static long events;
static unsigned long sink;

static int attr_cb(const struct nlattr *attr, void *data) {
  const struct nlattr **tb = data;
  int type = mnl_attr_get_type(attr);
  if (mnl_attr_type_valid(attr, CTA_MAX) < 0) return MNL_CB_OK;
  tb[type] = attr;
  return MNL_CB_OK;
}

static int event_cb(const struct nlmsghdr *nlh, void *data) {
  const struct nlattr *tb[CTA_MAX + 1] = {0};
  mnl_attr_parse(nlh, sizeof(struct nfgenmsg), attr_cb, tb);
  if (tb[CTA_ID]) sink += mnl_attr_get_u32(tb[CTA_ID]);
  events++;
  return MNL_CB_OK;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv) {
  long want = argc > 1 ? atol(argv[1]) : 100000;
  int rcvbuf = argc > 2 ? atoi(argv[2]) : (64 << 20);
  struct mnl_socket *nl = mnl_socket_open(NETLINK_NETFILTER);
  if (!nl) { perror("mnl_socket_open"); return 1; }
  if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) { perror("bind"); return 1; }
  int fd = mnl_socket_get_fd(nl);
  if (rcvbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0 &&
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) < 0) { perror("rcvbuf"); return 1; }
  int group = NFNLGRP_CONNTRACK_NEW;
  if (mnl_socket_setsockopt(nl, NETLINK_ADD_MEMBERSHIP, &group, sizeof group) < 0) { perror("join"); return 1; }
  printf("ready\n");
  fflush(stdout);
  char line[16];
  if (!fgets(line, sizeof line, stdin)) return 1;

  static char buf[1 << 16];
  double t0 = now(), c0 = cpu();
  struct pollfd fds[2] = {{fd, POLLIN, 0}, {0, POLLIN, 0}};
  while (want == 0 || events < want) {
    if (want == 0) {
      if (poll(fds, 2, -1) < 0 && errno != EINTR) { perror("poll"); return 1; }
      if (fds[1].revents) break; /* told to stop */
      /* POLLERR alone is a pending ENOBUFS: recv() reports and clears it (skipping it would
         spin, and leave the socket congested, dropping every later event). */
      if (!(fds[0].revents & (POLLIN | POLLERR))) continue;
    }
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == ENOBUFS) continue;
      perror("recv");
      return 1;
    }
    mnl_cb_run(buf, n, 0, 0, event_cb, NULL);
  }
  double secs = now() - t0, cpus = cpu() - c0;
  unsigned int mem[16] = {0};
  socklen_t len = sizeof mem;
  getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mem, &len);
  printf("%ld %.6f %.6f %u %lu\n", events, secs, cpus, mem[8], sink & 1);
  mnl_socket_close(nl);
  return 0;
}
