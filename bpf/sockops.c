/* SPDX-License-Identifier: GPL-2.0 */
/* cgroup/sock_ops: decide which TCP connections are accelerated and enrol
 * both of their sockets into ma_sockhash.
 *
 * Pairing. A connection is accelerated only when both ends live in enrolled
 * network namespaces on this host. The two ends find each other through the
 * client's endpoint (netns cookie, ip, port), which DNAT and REDIRECT keep:
 *
 *   1. SYN at an enrolled listener (TIMEOUT_INIT on the request socket): the
 *      server records an INTENT for the client's endpoint. This runs before
 *      the SYN-ACK is sent, so it always precedes step 2.
 *   2. ACTIVE_ESTABLISHED at the client: only if an INTENT exists for its own
 *      endpoint does the client enter the sockhash (state WAITING). A client
 *      whose peer is remote, unenrolled or the host never sees an INTENT and
 *      never enters the map, so it never sits in a sockhash while receiving
 *      from the stack (kernels with commit 929e30f93125 report FIONREAD=0
 *      for it and can lose epoll wake-ups, grafana/beyla#3025).
 *   3. PASSIVE_ESTABLISHED at the server: checks both ISNs against the
 *      client's claim, enters the sockhash and commits the pair (PAIRED).
 *
 * Byte order. Between 2 and 3 the client may already send (the final ACK can
 * be processed after connect() returns). The client's first sendmsg() and the
 * server's commit race; one compare-and-swap on the pair's state decides: if
 * the client sends first the pair becomes NATIVE and the server removes both
 * sockets from the map before any byte was redirected. So each direction is
 * redirected from its first byte or never, and a receiver never mixes stack
 * and redirected bytes. */
#include <uapi/linux/bpf.h>

#include "lib/maps.h"
#include "lib/counters.h"
#include "lib/flow.h"
#include "lib/tuple.h"

#define MA_EEXIST 17

/* include/net/tcp_states.h */
#define MA_TCP_ESTABLISHED 1
#define MA_TCP_FIN_WAIT1 4
#define MA_TCP_CLOSE 7

static __always_inline int ma_port_excluded(__u64 netns, __u32 port)
{
	struct ma_port_key k = { .netns = netns, .port = port };

	return ma_excl_ports.lookup(&k) != NULL;
}

/* Does the policy of both namespaces allow a connection of this shape? Only
 * the SYN step asks: without an intent neither end ever enrols. */
static __always_inline int ma_shape_allowed(__u64 server, __u64 client)
{
	struct ma_netns_info *info = ma_netns.lookup(&server);
	struct ma_netns_info *peer;

	if (!info)
		return 0;
	if (server == client)
		return !(info->flags & MA_NETNS_F_NO_SIDECAR);
	if (info->flags & MA_NETNS_F_NO_DIRECT)
		return 0;
	peer = ma_netns.lookup(&client);
	return peer && !(peer->flags & MA_NETNS_F_NO_DIRECT);
}

static __always_inline int ma_netns_eligible(__u64 netns, struct ma_tuple *t)
{
	struct ma_netns_info *info = ma_netns.lookup(&netns);

	if (!info)
		return 0;
	/* Most namespaces exclude nothing: skip two hash lookups on every
	 * connection-setup callback (short connections pay for each). */
	if (!(info->flags & MA_NETNS_F_EXCLUSIONS))
		return 1;
	return !ma_port_excluded(netns, t->local_port) &&
	       !ma_port_excluded(netns, t->remote_port);
}

/* Which namespace does the client at @ip4 live in, seen from a server in
 * @own? Loopback never leaves a namespace; any other address must be an
 * enrolled endpoint of this host. A spoofed source resolves to the address'
 * real owner, whose endpoint the spoofer cannot claim in step 2. */
static __always_inline int ma_client_netns(__u64 own, __u32 ip4, __u64 *out)
{
	__u64 *ns;

	if (ma_is_loopback(ip4)) {
		*out = own;
		return 1;
	}
	ns = ma_endpoints.lookup(&ip4);
	if (!ns)
		return 0;
	*out = *ns;
	return 1;
}

/* Is @ip4, the address a SYN arrived at in @netns, one the namespace owns?
 * A pod with CAP_NET_ADMIN can put a neighbour's address on its interface
 * and answer for it (ARP); the kernel would deliver such a connection to it
 * anyway, but meshaccel must not accelerate (and count) it as that pod's. */
static __always_inline int ma_local_ip_owned(__u64 netns, __u32 ip4)
{
	__u64 *owner;

	if (ma_is_loopback(ip4))
		return 1;
	owner = ma_endpoints.lookup(&ip4);
	return owner && *owner == netns;
}

static __always_inline void ma_fill_key(struct ma_sock_key *key, __u64 netns,
					struct ma_tuple *t)
{
	key->netns = netns;
	key->local_ip4 = t->local_ip4;
	key->remote_ip4 = t->remote_ip4;
	key->local_port = t->local_port;
	key->remote_port = t->remote_port;
}

/* Step 1: a SYN reached an enrolled listener. */
static __always_inline void ma_on_syn(struct bpf_sock_ops *skops)
{
	struct ma_pair intent = { .state = MA_PAIR_INTENT };
	struct ma_origin_key origin = {};
	struct ma_tuple t;
	__u64 netns;
	int err;

	if (!ma_tuple_from_ops(skops, &t))
		return;
	netns = bpf_get_netns_cookie(skops);
	if (!ma_netns_eligible(netns, &t))
		return;
	if (!ma_client_netns(netns, t.remote_ip4, &origin.netns))
		return;
	if (!ma_shape_allowed(netns, origin.netns))
		return;
	if (!ma_local_ip_owned(netns, t.local_ip4))
		return;
	origin.ip4 = t.remote_ip4;
	origin.port = t.remote_port;
	/* NOEXIST: a retransmitted SYN keeps the first intent, and a second
	 * handshake from the same endpoint cannot hijack a claimed one. */
	err = ma_pairs.insert(&origin, &intent);
	if (err && err != -MA_EEXIST)
		ma_count(MA_C_REFUSED_PAIRS_FULL, 1);
}

/* Step 2: the client's handshake completed. */
static __always_inline void ma_on_active_established(struct bpf_sock_ops *skops)
{
	struct ma_sock_state_val *st;
	struct ma_origin_key origin = {};
	struct ma_sock_key key = {};
	struct bpf_sock *sk = skops->sk;
	struct ma_pair *pair;
	struct ma_tuple t;
	__u64 netns;
	int err;

	if (!sk || !ma_tuple_from_ops(skops, &t))
		return;
	netns = bpf_get_netns_cookie(skops);
	origin.netns = netns;
	origin.ip4 = t.local_ip4;
	origin.port = t.local_port;
	pair = ma_pairs.lookup(&origin);
	if (!pair)
		return; /* no enrolled server on this host got our SYN */
	if (__sync_val_compare_and_swap(&pair->state, MA_PAIR_INTENT,
					MA_PAIR_CLAIMING) != MA_PAIR_INTENT)
		return; /* another handshake from this endpoint owns it */

	/* Data in the SYN (TCP Fast Open) already went through the stack;
	 * redirecting later bytes could overtake it at the receiver. */
	if (!ma_netns_eligible(netns, &t) || skops->data_segs_out)
		goto release;

	ma_fill_key(&key, netns, &t);
	st = ma_sock_state.sk_storage_get(sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st)
		goto release;
	st->origin = origin;
	st->self = key;
	st->state = MA_SOCK_WAITING;
	st->flow.origin = origin;
	st->flow.client_next_seq = skops->snd_una;
	st->flow.server_next_seq = skops->rcv_nxt;
	st->send_dir = MA_DIR_FROM_CLIENT;
	st->last_copied_seq = skops->rcv_nxt;

	pair->client = key;
	pair->client_next_seq = skops->snd_una;
	pair->server_next_seq = skops->rcv_nxt;

	err = ma_sockhash.sock_hash_update(skops, &key, BPF_NOEXIST);
	if (err) {
		ma_count(err == -MA_EEXIST ? MA_C_REFUSED_EXISTS : MA_C_REFUSED_FULL, 1);
		st->state = MA_SOCK_NATIVE;
		goto release;
	}
	ma_count(MA_C_SOCKETS_ENROLLED, 1);
	/* State changes of enrolled sockets only: a half-close (ma_on_state)
	 * and the close that frees the pair's flow entry. */
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
	/* A locked cmpxchg, not a plain store: it orders the writes above
	 * before the state the server checks them under. */
	__sync_val_compare_and_swap(&pair->state, MA_PAIR_CLAIMING,
				    MA_PAIR_CLIENT_READY);
	return;
release:
	ma_pairs.delete(&origin);
}

/* Step 3: the server's handshake completed (the accept()able child). */
static __always_inline void ma_on_passive_established(struct bpf_sock_ops *skops)
{
	struct ma_sock_state_val *st;
	struct ma_origin_key origin = {};
	struct ma_sock_key client, key = {};
	struct bpf_sock *sk = skops->sk;
	struct ma_pair *pair;
	struct ma_tuple t;
	__u64 netns, prev, state;
	int err;

	if (!sk || !ma_tuple_from_ops(skops, &t))
		return;
	netns = bpf_get_netns_cookie(skops);
	if (!ma_client_netns(netns, t.remote_ip4, &origin.netns))
		return;
	origin.ip4 = t.remote_ip4;
	origin.port = t.remote_port;
	pair = ma_pairs.lookup(&origin);
	if (!pair)
		return;
	state = pair->state;
	if (state == MA_PAIR_INTENT) {
		/* The client did not enrol (its namespace is not enrolled). */
		ma_pairs.delete(&origin);
		return;
	}
	if (state != MA_PAIR_CLIENT_READY && state != MA_PAIR_NATIVE)
		return;
	if (pair->client_next_seq != skops->rcv_nxt ||
	    pair->server_next_seq != skops->snd_una) {
		/* The claim belongs to another connection from the same
		 * endpoint; it is not ours to commit or to undo. */
		ma_count(MA_C_PAIR_MISMATCH, 1);
		return;
	}
	/* From here on the pair is ours: every exit settles it. */
	client = pair->client;
	if (state == MA_PAIR_NATIVE)
		goto settled_native; /* the client already sent via the stack */
	ma_fill_key(&key, netns, &t);

	if (!ma_netns_eligible(netns, &t) || skops->data_segs_in)
		goto fail;
	st = ma_sock_state.sk_storage_get(sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st)
		goto fail;
	st->origin = origin;
	st->self = key;
	st->peer = client;
	st->state = MA_SOCK_PAIRED;
	st->flow.origin = origin;
	st->flow.client_next_seq = pair->client_next_seq;
	st->flow.server_next_seq = pair->server_next_seq;
	st->send_dir = MA_DIR_FROM_SERVER;
	st->last_copied_seq = skops->rcv_nxt;
	pair->server = key;
	if (!ma_flow_create(&st->flow)) {
		st->state = MA_SOCK_NATIVE;
		goto fail;
	}
	/* (BCC rewrites map method calls textually: keep them out of
	 * conditions.) */
	err = ma_sockhash.sock_hash_update(skops, &key, BPF_NOEXIST);
	if (err) {
		ma_count(err == -MA_EEXIST ? MA_C_REFUSED_EXISTS : MA_C_REFUSED_FULL, 1);
		st->state = MA_SOCK_NATIVE;
		goto fail_flow;
	}
	ma_count(MA_C_SOCKETS_ENROLLED, 1);
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);

	prev = __sync_val_compare_and_swap(&pair->state, MA_PAIR_CLIENT_READY,
					   MA_PAIR_PAIRED);
	if (prev == MA_PAIR_CLIENT_READY) {
		/* Committed. The client learns the server's key from the
		 * pair on its first send and deletes the entry then. */
		ma_count(MA_C_PAIRS, 1);
		return;
	}
	ma_flows.delete(&st->flow);
	/* The client's first bytes went through the stack while we were
	 * enrolling. Nobody has redirected anything to either socket, so
	 * removing both from the map loses nothing, and afterwards neither
	 * sits in a sockhash while the stack delivers to it. */
	st->state = MA_SOCK_NATIVE;
	ma_sockhash.delete(&key);
settled_native:
	ma_count(MA_C_PAIR_RACE_NATIVE, 1);
	ma_sockhash.delete(&client);
	ma_pairs.delete(&origin);
	return;
fail_flow:
	ma_flows.delete(&st->flow);
fail:
	/* Settle the client as native and take it out of the map: its peer
	 * will never redirect to it, so there is nothing in flight to lose. */
	__sync_val_compare_and_swap(&pair->state, MA_PAIR_CLIENT_READY,
				    MA_PAIR_FAILED);
	ma_sockhash.delete(&client);
	ma_pairs.delete(&origin);
}

/* The socket shut its sending side (FIN_WAIT1 from ESTABLISHED: shutdown
 * SHUT_WR, or close()). What it reads from now on would still go through
 * tcp_bpf_recvmsg(), which answers a blocking read with EAGAIN when a wake-up
 * finds no data: and one is on its way, the ACK of this very FIN wakes the
 * reader (FIN_WAIT2's state change). A socket out of the sockhash reads
 * through tcp_recvmsg(), which waits as TCP does. So the socket leaves the
 * sockhash now, if that loses nothing: its ingress queue is empty, no redirect
 * towards it is under way (every byte the peer's verdicts counted was read,
 * and nobody else holds its psock), and the peer sends the rest of this
 * direction through the stack (CLOSED, set before looking: see
 * ma_flow_admit). We run under the socket's lock (the shutdown syscall), and
 * a redirect must take that lock to queue, so none can slip in meanwhile.
 * If the socket is busy, it stays (the peer spills to the stack instead and
 * may redirect again once everything was read). */
static __always_inline void ma_on_half_close(struct bpf_sock *sk, struct ma_sock_state_val *st)
{
	struct ma_flow_dir *d = ma_flow_dir(st, st->send_dir ^ 1);
	struct ma_sock_key self = st->self;
	struct ma_origin_key origin = st->origin;
	__u64 prev;

	if (!d || st->state == MA_SOCK_NATIVE)
		return;
	prev = __sync_val_compare_and_swap(&d->mode, MA_DIR_REDIRECT, MA_DIR_CLOSED);
	if (prev == MA_DIR_STACK)
		prev = __sync_val_compare_and_swap(&d->mode, MA_DIR_STACK, MA_DIR_CLOSED);
	if (prev != MA_DIR_REDIRECT && prev != MA_DIR_STACK)
		return;
	if (d->redirected == d->read_redirected && ma_psock_idle(sk)) {
		if (st->state == MA_SOCK_WAITING)
			ma_pairs.delete(&origin); /* it never sent: the pair is not settled */
		st->state = MA_SOCK_NATIVE;
		ma_sockhash.delete(&self);
		ma_count(MA_C_HALF_CLOSE_UNENROLLED, 1);
		return;
	}
	__sync_val_compare_and_swap(&d->mode, MA_DIR_CLOSED, MA_DIR_STACK);
	ma_count(MA_C_HALF_CLOSE_KEPT, 1);
}

static __always_inline void ma_on_state(struct bpf_sock_ops *skops)
{
	struct ma_sock_state_val *st;
	struct bpf_sock *sk = skops->sk;
	__u32 old = skops->args[0], new = skops->args[1];

	if (!sk)
		return;
	st = ma_sock_state.sk_storage_get(sk, 0, 0);
	if (!st)
		return;
	if (old == MA_TCP_ESTABLISHED && new == MA_TCP_FIN_WAIT1)
		ma_on_half_close(sk, st);
	else if (new == MA_TCP_CLOSE)
		ma_flow_closed(st);
}

int meshaccel_sockops(struct bpf_sock_ops *skops)
{
	/* Read op once, as a 32-bit load. if/else rather than switch: clang
	 * may lower a switch to a jump table, which BPF cannot express. */
	__u32 op = skops->op;

	if (op == BPF_SOCK_OPS_TIMEOUT_INIT) {
		/* Also called for a connecting full socket; only a listener's
		 * request socket (not a full socket) means "SYN received".
		 * We never set skops->reply, so the kernel keeps its timeout. */
		if (!skops->is_fullsock)
			ma_on_syn(skops);
	} else if (op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB) {
		ma_on_active_established(skops);
	} else if (op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB) {
		ma_on_passive_established(skops);
	} else if (op == BPF_SOCK_OPS_STATE_CB) {
		ma_on_state(skops);
	}
	return 1;
}
