/*
 * Fills the conntrack table of the current network namespace with real flows: sends one
 * UDP datagram from one socket to `count` distinct (127.x.y.z, port) destinations on
 * loopback. An nft ruleset that refers to conntrack must be loaded so the kernel tracks
 * them (and should drop the datagrams on input, so no ICMP errors are generated).
 *
 * Usage: fill_udp COUNT [FIRST]   (FIRST: index of the first destination, default 0)
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
  long count = argc > 1 ? atol(argv[1]) : 200000;
  long first = argc > 2 ? atol(argv[2]) : 0;
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) {
    perror("socket");
    return 1;
  }
  struct sockaddr_in to = {0};
  to.sin_family = AF_INET;
  char byte = 'x';
  long sent = 0;
  for (long i = first; i < first + count; i++) {
    /* 127.1.0.1 .. : 250 addresses per /24, 1000 ports each (127.1-127.255: 63M destinations) */
    long a = i / 1000, port = 10000 + (i % 1000);
    uint32_t addr = (127u << 24) | (uint32_t)((1 + a / 62500) << 16) | ((uint32_t)(a / 250 % 250) << 8) | (uint32_t)(a % 250 + 1);
    to.sin_addr.s_addr = htonl(addr);
    to.sin_port = htons((uint16_t)port);
    if (sendto(fd, &byte, 1, 0, (struct sockaddr *)&to, sizeof to) == 1) sent++;
  }
  printf("%ld\n", sent);
  return 0;
}
