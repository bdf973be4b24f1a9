/* SPDX-License-Identifier: GPL-2.0 */
/* tp_btf/sock_recv_length: runs after every recvmsg() on the node, and for
 * a socket of a paired connection counts what its application read, split
 * into the bytes that came from its ingress queue (redirected) and those that
 * came from the TCP receive queue (the stack). The sender's sk_msg reads both
 * to keep each direction within its bound (lib/flow.h).
 *
 * The split needs no hook inside tcp_bpf_recvmsg(): only reads from the TCP
 * receive queue advance copied_seq, so a read of `ret` bytes that moved
 * copied_seq by `stack` took ret - stack bytes from the ingress queue.
 *
 * The stack bytes are also counted here, once, at the reader: the sender's
 * per-message pass counters miss a message the kernel pushes to the stack
 * without running sk_msg (lib/flow.h), the reader's copied_seq misses none.
 *
 * It runs for every read on the node, so a socket without a psock (not in
 * any sockhash) leaves after one load. */
#include <uapi/linux/bpf.h>

#include "lib/maps.h"
#include "lib/counters.h"
#include "lib/flow.h"

#define MA_MSG_PEEK 2 /* include/linux/socket.h */

struct sock;

/* TP_PROTO(struct sock *sk, int ret, int flags) */
int meshaccel_recv(unsigned long long *ctx)
{
	struct sock *sk = (struct sock *)ctx[0];
	int ret = (int)ctx[1], flags = (int)ctx[2];
	struct ma_sock_state_val *st;
	struct ma_flow_dir *d;
	__u32 seq, stack;
	__u64 prev;

	if (ret <= 0 || (flags & MA_MSG_PEEK))
		return 0;
	if (!(MA_AT(sk, MA_OFF_SK_USER_DATA, __u64) & MA_SK_USER_DATA_PSOCK))
		return 0;
	st = ma_sock_state.sk_storage_get(sk, 0, 0);
	if (!st || st->state == MA_SOCK_NATIVE)
		return 0;
	d = ma_flow_dir(st, st->send_dir ^ 1);
	if (!d || !ma_copied_seq(sk, &seq))
		return 0;
	prev = __sync_lock_test_and_set(&st->last_copied_seq, (__u64)seq);
	stack = seq - (__u32)prev;
	if (stack)
		ma_count(MA_C_STACK_READ_BYTES, stack);
	if ((__u32)ret > stack)
		__sync_fetch_and_add(&d->read_redirected, (__u32)ret - stack);
	d->read_seq = seq;
	return 0;
}
