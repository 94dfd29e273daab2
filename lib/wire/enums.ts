/**
 * Kernel constants, mirrored from the Linux UAPI headers with the kernel's name beside
 * each. `test/unit/wire/enums.test.ts` compiles a C program against the system headers and
 * checks that every value here agrees. Attributes newer than the build machine's headers
 * (Linux 6.1) are marked "newer kernels" and defined here by hand.
 */

// linux/netlink.h
export const NLMSG_NOOP = 0x1; // NLMSG_NOOP
export const NLMSG_ERROR = 0x2; // NLMSG_ERROR
export const NLMSG_DONE = 0x3; // NLMSG_DONE
export const NLMSG_OVERRUN = 0x4; // NLMSG_OVERRUN
export const NLM_F_REQUEST = 0x01; // NLM_F_REQUEST
export const NLM_F_MULTI = 0x02; // NLM_F_MULTI
export const NLM_F_ACK = 0x04; // NLM_F_ACK
export const NLM_F_ECHO = 0x08; // NLM_F_ECHO
export const NLM_F_DUMP_INTR = 0x10; // NLM_F_DUMP_INTR
export const NLM_F_ROOT = 0x100; // NLM_F_ROOT
export const NLM_F_MATCH = 0x200; // NLM_F_MATCH
export const NLM_F_DUMP = 0x300; // NLM_F_DUMP
export const NLM_F_REPLACE = 0x100; // NLM_F_REPLACE
export const NLM_F_EXCL = 0x200; // NLM_F_EXCL
export const NLM_F_CREATE = 0x400; // NLM_F_CREATE
export const NLM_F_CAPPED = 0x100; // NLM_F_CAPPED (in acks)
export const NLM_F_ACK_TLVS = 0x200; // NLM_F_ACK_TLVS (in acks)
export const NLMSGERR_ATTR_MSG = 1; // NLMSGERR_ATTR_MSG
export const NLMSGERR_ATTR_OFFS = 2; // NLMSGERR_ATTR_OFFS
export const NLA_F_NESTED = 1 << 15; // NLA_F_NESTED
export const NLA_F_NET_BYTEORDER = 1 << 14; // NLA_F_NET_BYTEORDER
export const NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xffff; // NLA_TYPE_MASK
export const NETLINK_BROADCAST_ERROR = 4; // NETLINK_BROADCAST_ERROR
export const NETLINK_NO_ENOBUFS = 5; // NETLINK_NO_ENOBUFS
export const NETLINK_LISTEN_ALL_NSID = 8; // NETLINK_LISTEN_ALL_NSID

// linux/socket.h / linux/in.h
export const AF_UNSPEC = 0; // AF_UNSPEC
export const AF_INET = 2; // AF_INET
export const AF_INET6 = 10; // AF_INET6
export const IPPROTO_ICMP = 1; // IPPROTO_ICMP
export const IPPROTO_TCP = 6; // IPPROTO_TCP
export const IPPROTO_UDP = 17; // IPPROTO_UDP
export const IPPROTO_DCCP = 33; // IPPROTO_DCCP
export const IPPROTO_GRE = 47; // IPPROTO_GRE
export const IPPROTO_ICMPV6 = 58; // IPPROTO_ICMPV6
export const IPPROTO_SCTP = 132; // IPPROTO_SCTP
export const IPPROTO_UDPLITE = 136; // IPPROTO_UDPLITE

// linux/sock_diag.h: indices into SO_MEMINFO
export const SK_MEMINFO_RMEM_ALLOC = 0; // SK_MEMINFO_RMEM_ALLOC
export const SK_MEMINFO_RCVBUF = 1; // SK_MEMINFO_RCVBUF
export const SK_MEMINFO_DROPS = 8; // SK_MEMINFO_DROPS

// linux/netfilter/nfnetlink.h
export const NFNETLINK_V0 = 0; // NFNETLINK_V0
export const NFNL_SUBSYS_CTNETLINK = 1; // NFNL_SUBSYS_CTNETLINK
export const NFNL_SUBSYS_CTNETLINK_EXP = 2; // NFNL_SUBSYS_CTNETLINK_EXP
export const NFNLGRP_CONNTRACK_NEW = 1; // NFNLGRP_CONNTRACK_NEW
export const NFNLGRP_CONNTRACK_UPDATE = 2; // NFNLGRP_CONNTRACK_UPDATE
export const NFNLGRP_CONNTRACK_DESTROY = 3; // NFNLGRP_CONNTRACK_DESTROY
export const NFNLGRP_CONNTRACK_EXP_NEW = 4; // NFNLGRP_CONNTRACK_EXP_NEW
export const NFNLGRP_CONNTRACK_EXP_UPDATE = 5; // NFNLGRP_CONNTRACK_EXP_UPDATE
export const NFNLGRP_CONNTRACK_EXP_DESTROY = 6; // NFNLGRP_CONNTRACK_EXP_DESTROY

// linux/netfilter/nfnetlink_conntrack.h: enum cntl_msg_types
export const IPCTNL_MSG_CT_NEW = 0; // IPCTNL_MSG_CT_NEW
export const IPCTNL_MSG_CT_GET = 1; // IPCTNL_MSG_CT_GET
export const IPCTNL_MSG_CT_DELETE = 2; // IPCTNL_MSG_CT_DELETE
export const IPCTNL_MSG_CT_GET_CTRZERO = 3; // IPCTNL_MSG_CT_GET_CTRZERO
export const IPCTNL_MSG_CT_GET_STATS_CPU = 4; // IPCTNL_MSG_CT_GET_STATS_CPU
export const IPCTNL_MSG_CT_GET_STATS = 5; // IPCTNL_MSG_CT_GET_STATS
export const IPCTNL_MSG_CT_GET_DYING = 6; // IPCTNL_MSG_CT_GET_DYING
export const IPCTNL_MSG_CT_GET_UNCONFIRMED = 7; // IPCTNL_MSG_CT_GET_UNCONFIRMED

// enum ctnl_exp_msg_types
export const IPCTNL_MSG_EXP_NEW = 0; // IPCTNL_MSG_EXP_NEW
export const IPCTNL_MSG_EXP_GET = 1; // IPCTNL_MSG_EXP_GET
export const IPCTNL_MSG_EXP_DELETE = 2; // IPCTNL_MSG_EXP_DELETE
export const IPCTNL_MSG_EXP_GET_STATS_CPU = 3; // IPCTNL_MSG_EXP_GET_STATS_CPU

// enum ctattr_type
export const CTA_TUPLE_ORIG = 1; // CTA_TUPLE_ORIG
export const CTA_TUPLE_REPLY = 2; // CTA_TUPLE_REPLY
export const CTA_STATUS = 3; // CTA_STATUS
export const CTA_PROTOINFO = 4; // CTA_PROTOINFO
export const CTA_HELP = 5; // CTA_HELP
export const CTA_NAT_SRC = 6; // CTA_NAT_SRC
export const CTA_TIMEOUT = 7; // CTA_TIMEOUT
export const CTA_MARK = 8; // CTA_MARK
export const CTA_COUNTERS_ORIG = 9; // CTA_COUNTERS_ORIG
export const CTA_COUNTERS_REPLY = 10; // CTA_COUNTERS_REPLY
export const CTA_USE = 11; // CTA_USE
export const CTA_ID = 12; // CTA_ID
export const CTA_NAT_DST = 13; // CTA_NAT_DST
export const CTA_TUPLE_MASTER = 14; // CTA_TUPLE_MASTER
export const CTA_SEQ_ADJ_ORIG = 15; // CTA_SEQ_ADJ_ORIG
export const CTA_SEQ_ADJ_REPLY = 16; // CTA_SEQ_ADJ_REPLY
export const CTA_SECMARK = 17; // CTA_SECMARK (obsolete)
export const CTA_ZONE = 18; // CTA_ZONE
export const CTA_SECCTX = 19; // CTA_SECCTX
export const CTA_TIMESTAMP = 20; // CTA_TIMESTAMP
export const CTA_MARK_MASK = 21; // CTA_MARK_MASK
export const CTA_LABELS = 22; // CTA_LABELS
export const CTA_LABELS_MASK = 23; // CTA_LABELS_MASK
export const CTA_SYNPROXY = 24; // CTA_SYNPROXY
export const CTA_FILTER = 25; // CTA_FILTER
export const CTA_STATUS_MASK = 26; // CTA_STATUS_MASK
export const CTA_TIMESTAMP_EVENT = 27; // CTA_TIMESTAMP_EVENT (newer kernels: Linux 6.14, event time in ns)

// enum ctattr_tuple
export const CTA_TUPLE_IP = 1; // CTA_TUPLE_IP
export const CTA_TUPLE_PROTO = 2; // CTA_TUPLE_PROTO
export const CTA_TUPLE_ZONE = 3; // CTA_TUPLE_ZONE

// enum ctattr_ip
export const CTA_IP_V4_SRC = 1; // CTA_IP_V4_SRC
export const CTA_IP_V4_DST = 2; // CTA_IP_V4_DST
export const CTA_IP_V6_SRC = 3; // CTA_IP_V6_SRC
export const CTA_IP_V6_DST = 4; // CTA_IP_V6_DST

// enum ctattr_l4proto
export const CTA_PROTO_NUM = 1; // CTA_PROTO_NUM
export const CTA_PROTO_SRC_PORT = 2; // CTA_PROTO_SRC_PORT
export const CTA_PROTO_DST_PORT = 3; // CTA_PROTO_DST_PORT
export const CTA_PROTO_ICMP_ID = 4; // CTA_PROTO_ICMP_ID
export const CTA_PROTO_ICMP_TYPE = 5; // CTA_PROTO_ICMP_TYPE
export const CTA_PROTO_ICMP_CODE = 6; // CTA_PROTO_ICMP_CODE
export const CTA_PROTO_ICMPV6_ID = 7; // CTA_PROTO_ICMPV6_ID
export const CTA_PROTO_ICMPV6_TYPE = 8; // CTA_PROTO_ICMPV6_TYPE
export const CTA_PROTO_ICMPV6_CODE = 9; // CTA_PROTO_ICMPV6_CODE

// enum ctattr_protoinfo
export const CTA_PROTOINFO_TCP = 1; // CTA_PROTOINFO_TCP
export const CTA_PROTOINFO_DCCP = 2; // CTA_PROTOINFO_DCCP
export const CTA_PROTOINFO_SCTP = 3; // CTA_PROTOINFO_SCTP

// enum ctattr_protoinfo_tcp
export const CTA_PROTOINFO_TCP_STATE = 1; // CTA_PROTOINFO_TCP_STATE
export const CTA_PROTOINFO_TCP_WSCALE_ORIGINAL = 2; // CTA_PROTOINFO_TCP_WSCALE_ORIGINAL
export const CTA_PROTOINFO_TCP_WSCALE_REPLY = 3; // CTA_PROTOINFO_TCP_WSCALE_REPLY
export const CTA_PROTOINFO_TCP_FLAGS_ORIGINAL = 4; // CTA_PROTOINFO_TCP_FLAGS_ORIGINAL
export const CTA_PROTOINFO_TCP_FLAGS_REPLY = 5; // CTA_PROTOINFO_TCP_FLAGS_REPLY

// enum ctattr_protoinfo_dccp
export const CTA_PROTOINFO_DCCP_STATE = 1; // CTA_PROTOINFO_DCCP_STATE
export const CTA_PROTOINFO_DCCP_ROLE = 2; // CTA_PROTOINFO_DCCP_ROLE
export const CTA_PROTOINFO_DCCP_HANDSHAKE_SEQ = 3; // CTA_PROTOINFO_DCCP_HANDSHAKE_SEQ

// enum ctattr_protoinfo_sctp
export const CTA_PROTOINFO_SCTP_STATE = 1; // CTA_PROTOINFO_SCTP_STATE
export const CTA_PROTOINFO_SCTP_VTAG_ORIGINAL = 2; // CTA_PROTOINFO_SCTP_VTAG_ORIGINAL
export const CTA_PROTOINFO_SCTP_VTAG_REPLY = 3; // CTA_PROTOINFO_SCTP_VTAG_REPLY

// enum ctattr_counters
export const CTA_COUNTERS_PACKETS = 1; // CTA_COUNTERS_PACKETS
export const CTA_COUNTERS_BYTES = 2; // CTA_COUNTERS_BYTES
export const CTA_COUNTERS32_PACKETS = 3; // CTA_COUNTERS32_PACKETS
export const CTA_COUNTERS32_BYTES = 4; // CTA_COUNTERS32_BYTES

// enum ctattr_tstamp
export const CTA_TIMESTAMP_START = 1; // CTA_TIMESTAMP_START
export const CTA_TIMESTAMP_STOP = 2; // CTA_TIMESTAMP_STOP

// enum ctattr_nat
export const CTA_NAT_V4_MINIP = 1; // CTA_NAT_V4_MINIP
export const CTA_NAT_V4_MAXIP = 2; // CTA_NAT_V4_MAXIP
export const CTA_NAT_PROTO = 3; // CTA_NAT_PROTO
export const CTA_NAT_V6_MINIP = 4; // CTA_NAT_V6_MINIP
export const CTA_NAT_V6_MAXIP = 5; // CTA_NAT_V6_MAXIP

// enum ctattr_protonat
export const CTA_PROTONAT_PORT_MIN = 1; // CTA_PROTONAT_PORT_MIN
export const CTA_PROTONAT_PORT_MAX = 2; // CTA_PROTONAT_PORT_MAX

// enum ctattr_seqadj
export const CTA_SEQADJ_CORRECTION_POS = 1; // CTA_SEQADJ_CORRECTION_POS
export const CTA_SEQADJ_OFFSET_BEFORE = 2; // CTA_SEQADJ_OFFSET_BEFORE
export const CTA_SEQADJ_OFFSET_AFTER = 3; // CTA_SEQADJ_OFFSET_AFTER

// enum ctattr_synproxy
export const CTA_SYNPROXY_ISN = 1; // CTA_SYNPROXY_ISN
export const CTA_SYNPROXY_ITS = 2; // CTA_SYNPROXY_ITS
export const CTA_SYNPROXY_TSOFF = 3; // CTA_SYNPROXY_TSOFF

// enum ctattr_expect
export const CTA_EXPECT_MASTER = 1; // CTA_EXPECT_MASTER
export const CTA_EXPECT_TUPLE = 2; // CTA_EXPECT_TUPLE
export const CTA_EXPECT_MASK = 3; // CTA_EXPECT_MASK
export const CTA_EXPECT_TIMEOUT = 4; // CTA_EXPECT_TIMEOUT
export const CTA_EXPECT_ID = 5; // CTA_EXPECT_ID
export const CTA_EXPECT_HELP_NAME = 6; // CTA_EXPECT_HELP_NAME
export const CTA_EXPECT_ZONE = 7; // CTA_EXPECT_ZONE
export const CTA_EXPECT_FLAGS = 8; // CTA_EXPECT_FLAGS
export const CTA_EXPECT_CLASS = 9; // CTA_EXPECT_CLASS
export const CTA_EXPECT_NAT = 10; // CTA_EXPECT_NAT
export const CTA_EXPECT_FN = 11; // CTA_EXPECT_FN

// enum ctattr_expect_nat
export const CTA_EXPECT_NAT_DIR = 1; // CTA_EXPECT_NAT_DIR
export const CTA_EXPECT_NAT_TUPLE = 2; // CTA_EXPECT_NAT_TUPLE

// enum ctattr_help
export const CTA_HELP_NAME = 1; // CTA_HELP_NAME
export const CTA_HELP_INFO = 2; // CTA_HELP_INFO

// enum ctattr_secctx
export const CTA_SECCTX_NAME = 1; // CTA_SECCTX_NAME

// enum ctattr_stats_cpu
export const CTA_STATS_SEARCHED = 1; // CTA_STATS_SEARCHED (no longer used)
export const CTA_STATS_FOUND = 2; // CTA_STATS_FOUND
export const CTA_STATS_NEW = 3; // CTA_STATS_NEW (no longer used)
export const CTA_STATS_INVALID = 4; // CTA_STATS_INVALID
export const CTA_STATS_IGNORE = 5; // CTA_STATS_IGNORE (no longer used)
export const CTA_STATS_DELETE = 6; // CTA_STATS_DELETE (no longer used)
export const CTA_STATS_DELETE_LIST = 7; // CTA_STATS_DELETE_LIST (no longer used)
export const CTA_STATS_INSERT = 8; // CTA_STATS_INSERT
export const CTA_STATS_INSERT_FAILED = 9; // CTA_STATS_INSERT_FAILED
export const CTA_STATS_DROP = 10; // CTA_STATS_DROP
export const CTA_STATS_EARLY_DROP = 11; // CTA_STATS_EARLY_DROP
export const CTA_STATS_ERROR = 12; // CTA_STATS_ERROR
export const CTA_STATS_SEARCH_RESTART = 13; // CTA_STATS_SEARCH_RESTART
export const CTA_STATS_CLASH_RESOLVE = 14; // CTA_STATS_CLASH_RESOLVE
export const CTA_STATS_CHAIN_TOOLONG = 15; // CTA_STATS_CHAIN_TOOLONG

// enum ctattr_stats_global
export const CTA_STATS_GLOBAL_ENTRIES = 1; // CTA_STATS_GLOBAL_ENTRIES
export const CTA_STATS_GLOBAL_MAX_ENTRIES = 2; // CTA_STATS_GLOBAL_MAX_ENTRIES

// enum ctattr_expect_stats
export const CTA_STATS_EXP_NEW = 1; // CTA_STATS_EXP_NEW
export const CTA_STATS_EXP_CREATE = 2; // CTA_STATS_EXP_CREATE
export const CTA_STATS_EXP_DELETE = 3; // CTA_STATS_EXP_DELETE

// enum ctattr_filter
export const CTA_FILTER_ORIG_FLAGS = 1; // CTA_FILTER_ORIG_FLAGS
export const CTA_FILTER_REPLY_FLAGS = 2; // CTA_FILTER_REPLY_FLAGS

// net/netfilter/nf_internals.h (kernel-internal, stable ABI; used by nf_conntrack_netlink.c): CTA_FILTER flag bits
export const CTA_FILTER_F_CTA_IP_SRC = 1 << 0; // CTA_FILTER_F_CTA_IP_SRC
export const CTA_FILTER_F_CTA_IP_DST = 1 << 1; // CTA_FILTER_F_CTA_IP_DST
export const CTA_FILTER_F_CTA_TUPLE_ZONE = 1 << 2; // CTA_FILTER_F_CTA_TUPLE_ZONE
export const CTA_FILTER_F_CTA_PROTO_NUM = 1 << 3; // CTA_FILTER_F_CTA_PROTO_NUM
export const CTA_FILTER_F_CTA_PROTO_SRC_PORT = 1 << 4; // CTA_FILTER_F_CTA_PROTO_SRC_PORT
export const CTA_FILTER_F_CTA_PROTO_DST_PORT = 1 << 5; // CTA_FILTER_F_CTA_PROTO_DST_PORT
export const CTA_FILTER_F_CTA_PROTO_ICMP_TYPE = 1 << 6; // CTA_FILTER_F_CTA_PROTO_ICMP_TYPE
export const CTA_FILTER_F_CTA_PROTO_ICMP_CODE = 1 << 7; // CTA_FILTER_F_CTA_PROTO_ICMP_CODE
export const CTA_FILTER_F_CTA_PROTO_ICMP_ID = 1 << 8; // CTA_FILTER_F_CTA_PROTO_ICMP_ID
export const CTA_FILTER_F_CTA_PROTO_ICMPV6_TYPE = 1 << 9; // CTA_FILTER_F_CTA_PROTO_ICMPV6_TYPE
export const CTA_FILTER_F_CTA_PROTO_ICMPV6_CODE = 1 << 10; // CTA_FILTER_F_CTA_PROTO_ICMPV6_CODE
export const CTA_FILTER_F_CTA_PROTO_ICMPV6_ID = 1 << 11; // CTA_FILTER_F_CTA_PROTO_ICMPV6_ID

// linux/netfilter/nf_conntrack_common.h: enum ip_conntrack_status (bit numbers)
export const IPS_EXPECTED_BIT = 0; // IPS_EXPECTED_BIT
export const IPS_SEEN_REPLY_BIT = 1; // IPS_SEEN_REPLY_BIT
export const IPS_ASSURED_BIT = 2; // IPS_ASSURED_BIT
export const IPS_CONFIRMED_BIT = 3; // IPS_CONFIRMED_BIT
export const IPS_SRC_NAT_BIT = 4; // IPS_SRC_NAT_BIT
export const IPS_DST_NAT_BIT = 5; // IPS_DST_NAT_BIT
export const IPS_SEQ_ADJUST_BIT = 6; // IPS_SEQ_ADJUST_BIT
export const IPS_SRC_NAT_DONE_BIT = 7; // IPS_SRC_NAT_DONE_BIT
export const IPS_DST_NAT_DONE_BIT = 8; // IPS_DST_NAT_DONE_BIT
export const IPS_DYING_BIT = 9; // IPS_DYING_BIT
export const IPS_FIXED_TIMEOUT_BIT = 10; // IPS_FIXED_TIMEOUT_BIT
export const IPS_TEMPLATE_BIT = 11; // IPS_TEMPLATE_BIT
export const IPS_UNTRACKED_BIT = 12; // IPS_UNTRACKED_BIT (IPS_NAT_CLASH_BIT shares it)
export const IPS_HELPER_BIT = 13; // IPS_HELPER_BIT
export const IPS_OFFLOAD_BIT = 14; // IPS_OFFLOAD_BIT
export const IPS_HW_OFFLOAD_BIT = 15; // IPS_HW_OFFLOAD_BIT

/** Status flag names, indexed by bit number (names without the `IPS_` prefix). */
export const STATUS_NAMES = [
  'EXPECTED', 'SEEN_REPLY', 'ASSURED', 'CONFIRMED', 'SRC_NAT', 'DST_NAT', 'SEQ_ADJUST',
  'SRC_NAT_DONE', 'DST_NAT_DONE', 'DYING', 'FIXED_TIMEOUT', 'TEMPLATE', 'UNTRACKED',
  'HELPER', 'OFFLOAD', 'HW_OFFLOAD',
] as const;
export type StatusFlag = (typeof STATUS_NAMES)[number];

// linux/netfilter/nf_conntrack_common.h: expectation flags
export const NF_CT_EXPECT_PERMANENT = 0x1; // NF_CT_EXPECT_PERMANENT
export const NF_CT_EXPECT_INACTIVE = 0x2; // NF_CT_EXPECT_INACTIVE
export const NF_CT_EXPECT_USERSPACE = 0x4; // NF_CT_EXPECT_USERSPACE

// linux/netfilter/nf_conntrack_tcp.h: enum tcp_conntrack
export const TCP_STATES = [
  'NONE', 'SYN_SENT', 'SYN_RECV', 'ESTABLISHED', 'FIN_WAIT', 'CLOSE_WAIT', 'LAST_ACK',
  'TIME_WAIT', 'CLOSE', 'SYN_SENT2',
] as const; // TCP_CONNTRACK_NONE .. TCP_CONNTRACK_LISTEN (== TCP_CONNTRACK_SYN_SENT2)
export type TcpState = (typeof TCP_STATES)[number];

// linux/netfilter/nf_conntrack_tcp.h: IP_CT_TCP_FLAG_*
export const TCP_FLAG_NAMES: Record<number, string> = {
  0x01: 'WINDOW_SCALE', // IP_CT_TCP_FLAG_WINDOW_SCALE
  0x02: 'SACK_PERM', // IP_CT_TCP_FLAG_SACK_PERM
  0x04: 'CLOSE_INIT', // IP_CT_TCP_FLAG_CLOSE_INIT
  0x08: 'BE_LIBERAL', // IP_CT_TCP_FLAG_BE_LIBERAL
  0x10: 'DATA_UNACKNOWLEDGED', // IP_CT_TCP_FLAG_DATA_UNACKNOWLEDGED
  0x20: 'MAXACK_SET', // IP_CT_TCP_FLAG_MAXACK_SET
  0x40: 'EXP_CHALLENGE_ACK', // IP_CT_EXP_CHALLENGE_ACK
  0x80: 'SIMULTANEOUS_OPEN', // IP_CT_TCP_SIMULTANEOUS_OPEN
};

// linux/netfilter/nf_conntrack_sctp.h: enum sctp_conntrack
export const SCTP_STATES = [
  'NONE', 'CLOSED', 'COOKIE_WAIT', 'COOKIE_ECHOED', 'ESTABLISHED', 'SHUTDOWN_SENT',
  'SHUTDOWN_RECD', 'SHUTDOWN_ACK_SENT', 'HEARTBEAT_SENT', 'HEARTBEAT_ACKED',
] as const; // SCTP_CONNTRACK_NONE .. SCTP_CONNTRACK_HEARTBEAT_ACKED
export type SctpState = (typeof SCTP_STATES)[number];

// include/linux/netfilter/nf_conntrack_dccp.h (kernel-internal): enum ct_dccp_states (CT_DCCP_*)
export const DCCP_STATES = [
  'NONE', 'REQUEST', 'RESPOND', 'PARTOPEN', 'OPEN', 'CLOSEREQ', 'CLOSING', 'TIMEWAIT',
  'IGNORE', 'INVALID',
] as const; // CT_DCCP_NONE .. CT_DCCP_INVALID
export type DccpState = (typeof DCCP_STATES)[number];

/** Protocol names as Flow.proto reports them. */
export const PROTO_NAMES: Record<number, Proto> = {
  [IPPROTO_ICMP]: 'icmp',
  [IPPROTO_TCP]: 'tcp',
  [IPPROTO_UDP]: 'udp',
  [IPPROTO_DCCP]: 'dccp',
  [IPPROTO_GRE]: 'gre',
  [IPPROTO_ICMPV6]: 'icmpv6',
  [IPPROTO_SCTP]: 'sctp',
  [IPPROTO_UDPLITE]: 'udplite',
};
export type Proto = 'tcp' | 'udp' | 'udplite' | 'icmp' | 'icmpv6' | 'sctp' | 'dccp' | 'gre';
export const PROTO_NUMBERS: Record<Proto, number> = {
  icmp: IPPROTO_ICMP,
  tcp: IPPROTO_TCP,
  udp: IPPROTO_UDP,
  dccp: IPPROTO_DCCP,
  gre: IPPROTO_GRE,
  icmpv6: IPPROTO_ICMPV6,
  sctp: IPPROTO_SCTP,
  udplite: IPPROTO_UDPLITE,
};
/** Protocols whose tuples carry ports (GRE carries its keys in the port attributes). */
export const PORT_PROTOS: ReadonlySet<number> = new Set([
  IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE, IPPROTO_SCTP, IPPROTO_DCCP, IPPROTO_GRE,
]);

export type Family = 'ipv4' | 'ipv6';
