/* SPDX-License-Identifier: GPL-2.0 */
/* Reading addresses out of a sockops context.
 *
 * Every context field is read as a full 32-bit load: newer verifiers reject
 * narrow (8/16-bit) loads of bpf_sock_ops fields (kmesh#1716), so byte order
 * fixes happen in registers after the load. */
#ifndef MESHACCEL_TUPLE_H
#define MESHACCEL_TUPLE_H

#include "keys.h"

/* One 32-bit load of a context field, exactly where it is written. */
#define MA_CTX(field) (*(volatile __u32 *)&(field))

#define MA_AF_INET 2
#define MA_AF_INET6 10

struct ma_tuple {
	__u32 local_ip4;  /* network byte order */
	__u32 remote_ip4; /* network byte order */
	__u32 local_port; /* host byte order */
	__u32 remote_port;
};

/* Fill @t for IPv4 and IPv4-mapped IPv6 sockets. Returns 0 for anything
 * else, which is then never enrolled. */
static __always_inline int ma_tuple_from_ops(struct bpf_sock_ops *skops,
					     struct ma_tuple *t)
{
	/* All loads first and volatile, straight off the context pointer:
	 * otherwise clang may compute a field's address in one block and
	 * load through it in another, and the verifier rejects loads through
	 * a "modified ctx ptr" (the kernel rewrites ctx loads by offset). */
	__u32 family = MA_CTX(skops->family);
	__u32 lip4 = MA_CTX(skops->local_ip4), rip4 = MA_CTX(skops->remote_ip4);
	__u32 l0 = MA_CTX(skops->local_ip6[0]), l1 = MA_CTX(skops->local_ip6[1]);
	__u32 l2 = MA_CTX(skops->local_ip6[2]), l3 = MA_CTX(skops->local_ip6[3]);
	__u32 r0 = MA_CTX(skops->remote_ip6[0]), r1 = MA_CTX(skops->remote_ip6[1]);
	__u32 r2 = MA_CTX(skops->remote_ip6[2]), r3 = MA_CTX(skops->remote_ip6[3]);

	/* local_port is host order. remote_port is the network-order 16-bit
	 * port shifted into the upper half of the 32-bit field on
	 * little-endian hosts, so ntohl() yields the host-order port. */
	t->local_port = skops->local_port;
	t->remote_port = bpf_ntohl(skops->remote_port);

	if (family == MA_AF_INET) {
		t->local_ip4 = lip4;
		t->remote_ip4 = rip4;
		return 1;
	}
	/* IPv4-mapped IPv6 (::ffff:a.b.c.d): a server listening on [::]
	 * accepts IPv4 clients on AF_INET6 sockets. */
	if (family == MA_AF_INET6 && !(l0 | l1 | r0 | r1) &&
	    l2 == bpf_htonl(0x0000ffff) && r2 == bpf_htonl(0x0000ffff)) {
		t->local_ip4 = l3;
		t->remote_ip4 = r3;
		return 1;
	}
	return 0;
}

static __always_inline int ma_is_loopback(__u32 ip4)
{
	return (bpf_ntohl(ip4) >> 24) == 127;
}

#endif
