/* SPDX-License-Identifier: GPL-2.0 */
/* Per-CPU event counters. The agent sums the CPUs at scrape time
 * (meshaccel.agent.metrics); the indices are mirrored in
 * meshaccel.agent.layout.Counter and must stay in sync. */
#ifndef MESHACCEL_COUNTERS_H
#define MESHACCEL_COUNTERS_H

enum ma_counter {
	MA_C_SOCKETS_ENROLLED = 0, /* sockets inserted into the sockhash */
	MA_C_PAIRS,		   /* connections whose two ends were paired */
	MA_C_REDIR_MSGS,	   /* sendmsg chunks redirected to the peer */
	MA_C_REDIR_BYTES,
	MA_C_PASS_NATIVE,	   /* msg on the stack: pair settled native */
	MA_C_PASS_PEER_GONE,	   /* msg on the stack: peer left the map */
	MA_C_PASS_NO_STATE,	   /* msg on the stack: socket has no state */
	MA_C_REFUSED_EXISTS,	   /* insert refused: key already present */
	MA_C_REFUSED_FULL,	   /* insert refused: sockhash full/no memory */
	MA_C_REFUSED_PAIRS_FULL,   /* handshake not tracked: pair table */
	MA_C_PAIR_MISMATCH,	   /* server's ISNs did not match the claim */
	MA_C_PAIR_RACE_NATIVE,	   /* client sent before the server enrolled */
	MA_C_PASS_NATIVE_BYTES,
	MA_C_PASS_SHUTDOWN,	   /* msg on the stack: socket's send side shut */
	MA_C_FLOW_SPILLS,	   /* a direction switched to the stack (bound) */
	MA_C_FLOW_RESUMES,	   /* a direction switched back to redirect */
	MA_C_PASS_FLOW_CONTROL,	   /* msg on the stack: its direction is spilled */
	MA_C_PASS_FLOW_CONTROL_BYTES,
	MA_C_PASS_PEER_CLOSED,	   /* msg on the stack: peer half-closed and left */
	MA_C_HALF_CLOSE_UNENROLLED, /* a half-closed socket left the sockhash */
	MA_C_HALF_CLOSE_KEPT,	   /* ... could not yet (data or a send in flight) */
	MA_C_REFUSED_FLOWS_FULL,   /* pair not committed: flow table full */
	MA_C_PASS_PEER_GONE_BYTES,
	MA_C_PASS_NO_STATE_BYTES,
	MA_C_PASS_SHUTDOWN_BYTES,
	MA_C_PASS_PEER_CLOSED_BYTES,
	MA_C_PASS_DRAINING,	   /* msg on the stack: the datapath is uninstalling */
	MA_C_PASS_DRAINING_BYTES,
	MA_C_STACK_READ_BYTES,	   /* bytes a paired socket read from the TCP
				    * receive queue: exact, where the pass
				    * counters above can miss a message */
	MA_C_FIN_HELD,		   /* a peer's FIN refused while stack bytes wait
				    * behind the ingress queue (fin_gate.c) */
	MA_C_MAX,
};

BPF_PERCPU_ARRAY(ma_counters, __u64, MA_C_MAX);

static __always_inline void ma_count(__u32 idx, __u64 n)
{
	__u64 *c = ma_counters.lookup(&idx);

	/* Per-CPU slot: no other CPU writes it, a plain add is race free. */
	if (c)
		*c += n;
}

#endif
