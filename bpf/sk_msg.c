/* SPDX-License-Identifier: GPL-2.0 */
/* sk_msg verdict on ma_sockhash: runs for every sendmsg() chunk of an
 * enrolled socket and moves it straight into the peer socket's receive queue
 * (BPF_F_INGRESS), skipping TCP/IP, netfilter, qdiscs and the veth/loopback
 * device.
 *
 * Fail open: every path returns SK_PASS. SK_DROP would make the
 * application's write fail with EACCES; SK_PASS without a redirect sends the
 * bytes through the normal stack.
 *
 * Flow control (lib/flow.h): a direction whose receiver falls behind by the
 * bound goes through the stack until the receiver has caught up. */
#include <uapi/linux/bpf.h>

#include "lib/maps.h"
#include "lib/counters.h"
#include "lib/flow.h"

/* include/net/tcp_states.h */
#define MA_TCP_ESTABLISHED 1
#define MA_TCP_CLOSE_WAIT 8

static __always_inline int ma_same_sock(struct ma_sock_key *a, struct ma_sock_key *b)
{
	return a->netns == b->netns && a->local_ip4 == b->local_ip4 &&
	       a->remote_ip4 == b->remote_ip4 && a->local_port == b->local_port &&
	       a->remote_port == b->remote_port;
}

/* A WAITING client sends for the first time: settle its pair (see sockops.c).
 * sk_msg runs under the socket lock, so @st has no concurrent writer. */
static __always_inline __u64 ma_settle(struct ma_sock_state_val *st)
{
	struct ma_origin_key origin = st->origin;
	struct ma_pair *pair = ma_pairs.lookup(&origin);
	__u64 prev;

	st->state = MA_SOCK_NATIVE;
	if (!pair || !ma_same_sock(&pair->client, &st->self))
		return MA_SOCK_NATIVE;
	prev = __sync_val_compare_and_swap(&pair->state, MA_PAIR_CLIENT_READY,
					   MA_PAIR_NATIVE);
	if (prev == MA_PAIR_PAIRED) {
		st->peer = pair->server;
		st->state = MA_SOCK_PAIRED;
		ma_pairs.delete(&origin);
	}
	/* CLIENT_READY -> NATIVE: the server has not committed; it will see
	 * NATIVE and take both sockets out of the map. */
	return st->state;
}

int meshaccel_sk_msg(struct sk_msg_md *msg)
{
	struct ma_sock_state_val *st;
	struct ma_flow_dir *d;
	struct bpf_sock *sk = msg->sk;
	__u32 size = msg->size;
	__u32 tcp_state;
	__u64 state;
	int verdict;

	if (!sk)
		goto no_state;
	/* tcp_bpf_sendmsg() does not check SEND_SHUTDOWN: after shutdown(WR)
	 * a redirect would still deliver bytes behind the FIN the peer already
	 * read as EOF. Sending is legal only in ESTABLISHED and CLOSE_WAIT;
	 * anything else goes to the stack, which fails it with EPIPE exactly
	 * as plain TCP does. */
	tcp_state = sk->state;
	if (tcp_state != MA_TCP_ESTABLISHED && tcp_state != MA_TCP_CLOSE_WAIT) {
		ma_count(MA_C_PASS_SHUTDOWN, 1);
		ma_count(MA_C_PASS_SHUTDOWN_BYTES, size);
		return SK_PASS;
	}
	st = ma_sock_state.sk_storage_get(sk, 0, 0);
	if (!st)
		goto no_state;
	state = st->state;
	if (state == MA_SOCK_WAITING)
		state = ma_settle(st);
	if (state != MA_SOCK_PAIRED || MA_FAULT_NO_REDIRECT) {
		ma_count(MA_C_PASS_NATIVE, 1);
		ma_count(MA_C_PASS_NATIVE_BYTES, size);
		return SK_PASS;
	}
	d = ma_flow_dir(st, st->send_dir);
	if (!d)
		goto no_state;
	if (!ma_flow_admit(sk, d, size))
		return SK_PASS; /* through the stack: flow control or a half-close */
	/* Returns SK_PASS when the peer's key is in the map and the redirect is
	 * armed; SK_DROP when the peer already closed and left the map. */
	verdict = ma_sockhash.msg_redirect_hash(msg, &st->peer, BPF_F_INGRESS);
	if (verdict == SK_PASS) {
		ma_count(MA_C_REDIR_MSGS, 1);
		ma_count(MA_C_REDIR_BYTES, size);
		return SK_PASS;
	}
	ma_flow_unadmit(d, size);
	ma_count(MA_C_PASS_PEER_GONE, 1);
	ma_count(MA_C_PASS_PEER_GONE_BYTES, size);
	return SK_PASS;
no_state:
	ma_count(MA_C_PASS_NO_STATE, 1);
	ma_count(MA_C_PASS_NO_STATE_BYTES, size);
	return SK_PASS;
}
