/* SPDX-License-Identifier: GPL-2.0 */
/* cgroup_skb/ingress: runs for every segment a socket of the cgroup
 * receives, before TCP queues it (tcp_v4_rcv -> tcp_filter), and refuses a
 * peer's FIN while it would end the stream too early.
 *
 * A spilled direction (lib/flow.h) leaves the receiver with two queues: the
 * redirected bytes on its psock ingress queue and, behind them, the bytes
 * that took the stack on its TCP receive queue. tcp_bpf_recvmsg() serves a
 * read from the ingress queue alone (sk_msg_recvmsg), so the read that
 * drains it returns short even though stack bytes are queued. Once the FIN
 * is in, that short read comes with EPOLLRDHUP, and an event loop that
 * takes "short read + RDHUP" for the end of the stream, as it may on TCP
 * (HAProxy's raw_sock_to_buf), drops everything behind it.
 *
 * So while such a direction still has bytes on the receiver's ingress queue
 * the FIN does not get in: the segment that carries it is dropped, as TCP
 * drops a segment it has no room for, and the sender retransmits it (loss
 * probe, then RTO). By the time a retransmission is let in, the ingress
 * queue is empty and every later read comes from the TCP receive queue,
 * which tcp_recvmsg() drains up to the FIN: a short read with RDHUP then
 * means what it means on TCP. Bytes never wait for this gate, only the end
 * of the stream does, and only on a spilled direction whose reader is behind.
 *
 * Every other segment passes after two loads from the packet. IPv4 only, as
 * the datapath. */
#include <uapi/linux/bpf.h>

#include "lib/maps.h"
#include "lib/counters.h"
#include "lib/flow.h"

#define MA_AF_INET 2	    /* include/linux/socket.h */
#define MA_IPPROTO_TCP 6    /* include/uapi/linux/in.h */
#define MA_IP_PROTOCOL_OFF 9 /* struct iphdr: protocol */
#define MA_TCP_FLAGS_OFF 13 /* struct tcphdr: the byte holding FIN..CWR */
#define MA_TCPHDR_FIN 0x01

#define MA_PASS 1
#define MA_DROP 0

/* Does the segment carry a FIN? Read in place: tcp_v4_rcv() has pulled the
 * IPv4 and TCP headers into the linear area before the cgroup program runs
 * (pskb_may_pull of th->doff * 4), and cgroup_skb sees the packet from the
 * IPv4 header on. Every segment of the node pays this, so no helper call. */
static __always_inline int ma_is_tcp_fin(struct __sk_buff *skb)
{
	__u8 *data = (__u8 *)(long)skb->data, *end = (__u8 *)(long)skb->data_end;
	volatile __u8 *flags;

	if (data + MA_IP_PROTOCOL_OFF + 1 > end || data[MA_IP_PROTOCOL_OFF] != MA_IPPROTO_TCP)
		return 0;
	/* One pointer for the bounds check and the load: the verifier proves
	 * the access through the register it checked. */
	flags = data + (data[0] & 0xf) * 4 + MA_TCP_FLAGS_OFF;
	if ((__u8 *)flags + 1 > end)
		return 0;
	return *flags & MA_TCPHDR_FIN;
}

int meshaccel_fin_gate(struct __sk_buff *skb)
{
	struct ma_sock_state_val *st;
	struct bpf_sock *sk;
	struct ma_config *cfg;
	struct ma_flow_dir *d;

	if (!ma_is_tcp_fin(skb) || !skb->sk)
		return MA_PASS;
	sk = bpf_sk_fullsock(skb->sk);
	if (!sk || sk->family != MA_AF_INET)
		return MA_PASS;
	st = ma_sock_state.sk_storage_get(sk, 0, 0);
	if (!st || st->state == MA_SOCK_NATIVE)
		return MA_PASS;
	d = ma_flow_dir(st, st->send_dir ^ 1);
	if (!d)
		return MA_PASS;
	/* A direction that never left REDIRECT has nothing on the stack: its
	 * FIN is the true end however much ingress is left. A spilled one
	 * (STACK), or any while the datapath drains for uninstall, may. */
	cfg = ma_cfg();
	if (d->mode == MA_DIR_REDIRECT && !(cfg && cfg->draining))
		return MA_PASS;
	if (!ma_ingress_queued(sk))
		return MA_PASS;
	ma_count(MA_C_FIN_HELD, 1);
	return MA_DROP;
}
