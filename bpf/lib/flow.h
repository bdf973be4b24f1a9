/* SPDX-License-Identifier: GPL-2.0 */
/* Flow control for redirected bytes.
 *
 * An ingress redirect never blocks its sender: tcp_bpf_sendmsg() waits only
 * on the sender's own send buffer, which the redirect uncharges at once, and
 * bpf_tcp_ingress() charges the receiver without comparing with sk_rcvbuf
 * (net/ipv4/tcp_bpf.c). Left alone, a fast writer queues unbounded kernel
 * memory at a slow reader, and the writer meets ENOMEM once TCP's memory
 * limits are reached. The only place a sendmsg() can wait is the TCP stack.
 *
 * So each direction is redirected while the bytes redirected and not yet read
 * stay below ma_config.flow_bound; past it the sender's messages go through
 * the stack (SK_PASS), where the receive window throttles the writer exactly
 * as on plain TCP: a blocking write blocks, a non-blocking one gets EAGAIN and
 * EPOLLOUT later. The switch keeps byte order because tcp_bpf_recvmsg() reads
 * the ingress queue before the TCP receive queue: everything redirected is
 * read before any byte that took the stack.
 *
 * The direction returns to redirect only once the receiver has read every
 * stack byte (its copied_seq, published by recv.c, equals the sender's
 * write_seq) and no writer of the socket sleeps half-way into the stack
 * (sk_write_pending); a redirect earlier than that could overtake bytes still
 * in the stack. Half the bound must also have drained, so one slow reader
 * does not flap between the paths.
 *
 * A push to the stack that fails (EAGAIN on a full send buffer) leaves the
 * kernel's verdict at SK_PASS, and the socket's next chunk is pushed without
 * running the program (tcp_bpf_send_verdict() resets psock->eval only on
 * success). That chunk takes the stack, which is where a spilled direction
 * sends anyway; it is only missing from the pass counters (recv.c counts
 * every stack byte exactly, at the reader). */
#ifndef MESHACCEL_FLOW_H
#define MESHACCEL_FLOW_H

#include "counters.h"
#include "kernel.h"
#include "maps.h"

static __always_inline struct ma_config *ma_cfg(void)
{
	__u32 zero = 0;

	return ma_config.lookup(&zero);
}

static __always_inline struct ma_flow_dir *ma_flow_dir(struct ma_sock_state_val *st, __u32 dir)
{
	struct ma_flow_key key = st->flow;
	struct ma_flow *flow = ma_flows.lookup(&key);

	if (!flow)
		return NULL;
	return dir == MA_DIR_FROM_CLIENT ? &flow->dir[MA_DIR_FROM_CLIENT] : &flow->dir[MA_DIR_FROM_SERVER];
}

/* The flow entry of a pair the server is about to commit: both directions
 * redirect, and each receiver has read exactly the ISN + 1 of its sender
 * (nothing has taken the stack yet; data in the SYN is never paired). */
static __always_inline int ma_flow_create(struct ma_flow_key *key)
{
	struct ma_flow_key k = *key;
	struct ma_flow flow = {};
	int err;

	flow.dir[MA_DIR_FROM_CLIENT].mode = MA_DIR_REDIRECT;
	flow.dir[MA_DIR_FROM_CLIENT].read_seq = k.client_next_seq;
	flow.dir[MA_DIR_FROM_SERVER].mode = MA_DIR_REDIRECT;
	flow.dir[MA_DIR_FROM_SERVER].read_seq = k.server_next_seq;
	flow.open = 2;
	err = ma_flows.insert(&k, &flow);
	if (err) {
		ma_count(MA_C_REFUSED_FLOWS_FULL, 1);
		return 0;
	}
	return 1;
}

/* A socket of a pair closed; the second one frees the entry. */
static __always_inline void ma_flow_closed(struct ma_sock_state_val *st)
{
	struct ma_flow_key k = st->flow;
	struct ma_flow *flow = ma_flows.lookup(&k);

	if (flow && __sync_fetch_and_add(&flow->open, -1) == 1)
		ma_flows.delete(&k);
}

/* May a spilled direction go back to redirect? */
static __always_inline int ma_may_resume(void *sk, struct ma_flow_dir *d, __u64 unread, __u64 bound)
{
	__u32 write_seq;

	if (unread >= bound / 2 || ma_write_pending(sk))
		return 0;
	if (!ma_write_seq(sk, &write_seq))
		return 0;
	return write_seq == d->read_seq;
}

/* The sender's decision for one message of @size bytes on direction @d:
 * 1 = redirect it (and @d now counts it), 0 = send it through the stack. */
static __always_inline int ma_flow_admit(void *sk, struct ma_flow_dir *d, __u32 size)
{
	struct ma_config *cfg = ma_cfg();
	__u64 bound = cfg ? cfg->flow_bound : 0;
	__u64 mode, unread, draining;

	/* Announce the bytes before looking at the mode: a receiver deciding to
	 * leave the sockhash (ma_half_close) switches the mode first and looks
	 * at `redirected` second, so one of the two always sees the other.
	 * Atomic read-modify-writes are full barriers. The agent draining the
	 * datapath sets `draining` first and reads `redirected` second, the
	 * same handshake. */
	__sync_fetch_and_add(&d->redirected, size);
	draining = cfg ? cfg->draining : 0;
	mode = draining ? MA_DIR_CLOSED : d->mode;
	unread = d->redirected - size - d->read_redirected;
	if (mode == MA_DIR_REDIRECT) {
		if (unread < bound)
			return 1;
		if (__sync_val_compare_and_swap(&d->mode, MA_DIR_REDIRECT, MA_DIR_STACK) == MA_DIR_REDIRECT)
			ma_count(MA_C_FLOW_SPILLS, 1);
	} else if (mode == MA_DIR_STACK && ma_may_resume(sk, d, unread, bound)) {
		if (__sync_val_compare_and_swap(&d->mode, MA_DIR_STACK, MA_DIR_REDIRECT) == MA_DIR_STACK) {
			ma_count(MA_C_FLOW_RESUMES, 1);
			return 1;
		}
	}
	__sync_fetch_and_add(&d->redirected, -(__s64)size);
	if (draining) {
		ma_count(MA_C_PASS_DRAINING, 1);
		ma_count(MA_C_PASS_DRAINING_BYTES, size);
	} else if (mode == MA_DIR_CLOSED) {
		ma_count(MA_C_PASS_PEER_CLOSED, 1);
		ma_count(MA_C_PASS_PEER_CLOSED_BYTES, size);
	} else {
		ma_count(MA_C_PASS_FLOW_CONTROL, 1);
		ma_count(MA_C_PASS_FLOW_CONTROL_BYTES, size);
	}
	return 0;
}

/* A redirect the helper refused after ma_flow_admit() counted it. */
static __always_inline void ma_flow_unadmit(struct ma_flow_dir *d, __u32 size)
{
	__sync_fetch_and_add(&d->redirected, -(__s64)size);
}

#endif
