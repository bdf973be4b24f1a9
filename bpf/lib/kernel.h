/* SPDX-License-Identifier: GPL-2.0 */
/* Kernel members read through BTF pointers, at offsets the agent takes from
 * the running kernel's BTF (config.h). bpf_skc_to_tcp_sock() turns any socket
 * pointer a program holds into a BTF-typed `struct tcp_sock`; loads through it
 * are checked by the verifier against that BTF, member by member.
 *
 * The psock (net/core/skmsg.c) hangs off sk_user_data with flag bits in the
 * low three bits (SK_USER_DATA_NOCOPY | _BPF | _PSOCK, include/net/sock.h);
 * sk_user_data is a plain pointer to the verifier, so its members are read
 * with bpf_probe_read_kernel() (ma_probe_read_kernel, below). */
#ifndef MESHACCEL_KERNEL_H
#define MESHACCEL_KERNEL_H

#include "config.h"

#define MA_AT(base, off, type) (*(volatile type *)((char *)(base) + (off)))

/* bpf_probe_read_kernel() by its helper number. BCC redefines the name as
 * the old bpf_probe_read() when /proc/kallsyms shows the helper at address 0,
 * which it does to every reader without CAP_SYSLOG (an agent pod); sock_ops
 * and sk_msg programs may not call bpf_probe_read(), so the verifier would
 * refuse the whole datapath. */
static long (*ma_probe_read_kernel)(void *dst, __u32 size, const void *unsafe_ptr) =
	(void *)BPF_FUNC_probe_read_kernel;

#define MA_SK_USER_DATA_PSOCK 4UL
#define MA_SK_USER_DATA_PTRMASK (~7UL)

/* The TCP write sequence: every byte the socket accepted for the stack. */
static __always_inline int ma_write_seq(void *sk, __u32 *seq)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);

	if (!tp)
		return 0;
	*seq = MA_AT(tp, MA_OFF_TCP_WRITE_SEQ, __u32);
	return 1;
}

/* The TCP read sequence: every stack byte the application consumed. */
static __always_inline int ma_copied_seq(void *sk, __u32 *seq)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);

	if (!tp)
		return 0;
	*seq = MA_AT(tp, MA_OFF_TCP_COPIED_SEQ, __u32);
	return 1;
}

/* Writers sleeping in sk_stream_wait_memory() on this socket. */
static __always_inline int ma_write_pending(void *sk)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);

	return tp ? MA_AT(tp, MA_OFF_SK_WRITE_PENDING, int) : 1;
}

/* The socket's psock (sk_user_data with the PSOCK bit), NULL when it has
 * none: it is in no sockhash. */
static __always_inline char *ma_psock(void *sk)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	__u64 user_data;

	if (!tp)
		return 0;
	user_data = MA_AT(tp, MA_OFF_SK_USER_DATA, __u64);
	if (!(user_data & MA_SK_USER_DATA_PSOCK))
		return 0;
	return (char *)(user_data & MA_SK_USER_DATA_PTRMASK);
}

/* Bytes on the socket's ingress queue (redirected to it, not read yet); 0
 * for a socket without a psock. */
static __always_inline __u32 ma_ingress_queued(void *sk)
{
	char *psock = ma_psock(sk);
	__u32 queued = 0;

	if (!psock || ma_probe_read_kernel(&queued, sizeof(queued), psock + MA_OFF_PSOCK_MSG_TOT_LEN))
		return 0;
	return queued;
}

/* Is the socket's psock idle: nothing on its ingress queue and nobody holding
 * a reference beyond the sockhash's own? A reader inside tcp_bpf_recvmsg() or
 * a redirect on its way into the queue (tcp_bpf_sendmsg_redir()) each hold one. */
static __always_inline int ma_psock_idle(void *sk)
{
	char *psock = ma_psock(sk);
	__u32 queued = 1, refs = 0;

	if (!psock ||
	    ma_probe_read_kernel(&queued, sizeof(queued), psock + MA_OFF_PSOCK_MSG_TOT_LEN) ||
	    ma_probe_read_kernel(&refs, sizeof(refs), psock + MA_OFF_PSOCK_REFCNT))
		return 0;
	return queued == 0 && refs == 1;
}

#endif
