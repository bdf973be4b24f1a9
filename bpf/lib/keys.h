/* SPDX-License-Identifier: GPL-2.0 */
/* Map keys and values shared by the programs and the agent.
 *
 * Layout rules: every struct is naturally aligned with explicit padding, so
 * the agent (ctypes, see meshaccel.agent.layout) and clang agree byte for
 * byte. Addresses are IPv4 in network byte order, exactly as the kernel hands
 * them to us; ports are host byte order. Changing anything here means bumping
 * MA_SCHEMA_VERSION in config.h. */
#ifndef MESHACCEL_KEYS_H
#define MESHACCEL_KEYS_H

/* One established socket, seen from its own side. The netns cookie makes the
 * key unique across pods: loopback addresses, and pod IPs over time, repeat in
 * different network namespaces, and a key without the cookie would let one
 * pod's bytes be redirected into another pod's socket. */
struct ma_sock_key {
	__u64 netns;
	__u32 local_ip4;
	__u32 remote_ip4;
	__u32 local_port;
	__u32 remote_port;
};

/* The connecting side's endpoint (netns + ip + port). It is the one thing
 * both ends of a connection can name identically: DNAT (kube-proxy) and
 * REDIRECT (Istio's 15001/15006 capture) rewrite the destination but keep the
 * source, so the accepting socket sees the client's ip:port as its remote. */
struct ma_origin_key {
	__u64 netns;
	__u32 ip4;
	__u32 port;
};

/* Life of a handshake in the ma_pairs map; the state word is only ever
 * changed with compare-and-swap because the client's first sendmsg() (process
 * context, any CPU) races with the server's PASSIVE_ESTABLISHED (softirq). */
enum ma_pair_state {
	MA_PAIR_INTENT = 1,	  /* an enrolled server got the SYN */
	MA_PAIR_CLAIMING = 2,	  /* client is writing its half */
	MA_PAIR_CLIENT_READY = 3, /* client is in the sockhash, not sending yet */
	MA_PAIR_PAIRED = 4,	  /* server committed: redirect both ways */
	MA_PAIR_NATIVE = 5,	  /* client sent first: the stack owns this pair */
	MA_PAIR_FAILED = 6,	  /* server could not enrol */
};

struct ma_pair {
	__u64 state;		/* enum ma_pair_state; 64-bit for BPF cmpxchg */
	struct ma_sock_key client;
	struct ma_sock_key server;
	/* Sequence numbers pin the pair to one connection. The origin alone is
	 * not unique: Linux reuses an ephemeral port for connections to
	 * different destinations, so two handshakes can share an origin. Both
	 * ends know both ISNs once established (client: snd_una/rcv_nxt,
	 * server: rcv_nxt/snd_una), nobody else does. */
	__u32 client_next_seq;	/* client ISN + 1 */
	__u32 server_next_seq;	/* server ISN + 1 */
};

/* Per-socket state, kept in socket-local storage so the per-message path is
 * one pointer walk, and freed by the kernel with the socket. */
enum ma_sock_state {
	MA_SOCK_WAITING = 1, /* client enrolled, pair not settled yet */
	MA_SOCK_PAIRED = 2,  /* redirect every message to peer */
	MA_SOCK_NATIVE = 3,  /* this direction stays on the TCP stack */
};

/* One connection, named the same from both of its ends: the client's
 * endpoint plus both initial sequence numbers (an endpoint alone can belong
 * to two live connections towards different destinations). */
struct ma_flow_key {
	struct ma_origin_key origin;
	__u32 client_next_seq; /* client ISN + 1 */
	__u32 server_next_seq; /* server ISN + 1 */
};

/* The two directions of a connection, by sender. */
#define MA_DIR_FROM_CLIENT 0
#define MA_DIR_FROM_SERVER 1

struct ma_sock_state_val {
	__u64 state;		/* enum ma_sock_state; 64-bit for cmpxchg */
	struct ma_origin_key origin; /* the pair this socket belongs to */
	struct ma_sock_key self;     /* own sockhash key */
	struct ma_sock_key peer;     /* where sk_msg redirects to */
	struct ma_flow_key flow;     /* its entry in ma_flows */
	__u32 send_dir;		     /* MA_DIR_FROM_*: the direction it sends */
	__u32 pad;
	__u64 last_copied_seq;	     /* receive side: copied_seq at its last read
				      * (64-bit: BPF's atomic exchange is) */
};

/* How one direction of a paired connection carries its bytes. The sender's
 * sk_msg switches it; only compare-and-swap changes it.
 *
 *   REDIRECT  into the peer's ingress queue, while the bytes redirected and
 *             not yet read stay below the bound (ma_config);
 *   STACK     through TCP (flow control by the receive window) until the
 *             receiver has read every byte of both paths, then REDIRECT again;
 *   CLOSED    the receiver half-closed and left the sockhash: TCP for good.
 *
 * While ma_config.draining is set (uninstall) every direction behaves as
 * CLOSED, so the agent can take each socket out of the sockhash once its
 * reader has read what was redirected to it. */
enum ma_dir_mode {
	MA_DIR_REDIRECT = 1,
	MA_DIR_STACK = 2,
	MA_DIR_CLOSED = 3,
};

/* Per direction. Each field has one kind of writer: the sender's sk_msg
 * (mode, redirected) or the receiver's read tracepoint (read_*). */
struct ma_flow_dir {
	__u64 mode;	       /* enum ma_dir_mode */
	__u64 redirected;      /* bytes the sender's verdicts redirected */
	__u64 read_redirected; /* bytes the receiver read from its ingress queue */
	__u32 read_seq;	       /* receiver's copied_seq after its last read */
	__u32 pad;
};

struct ma_flow {
	struct ma_flow_dir dir[2]; /* by MA_DIR_FROM_* */
	__u64 open;		   /* sockets of the pair not closed yet */
};

/* Settings the agent can change without replacing the programs. */
struct ma_config {
	__u64 flow_bound; /* max bytes redirected to one socket and not yet read */
	__u64 draining;	  /* 1: uninstalling, every message takes the stack */
};

/* Per enrolled network namespace. */
#define MA_NETNS_F_EXCLUSIONS 1 /* has entries in ma_excl_ports */
/* Traffic shapes the namespace opted out of (policy `shapes`). A connection
 * inside one namespace is the "sidecar" shape (app <-> its own proxy over
 * loopback or the pod IP); one between two namespaces is "direct". */
#define MA_NETNS_F_NO_SIDECAR 2
#define MA_NETNS_F_NO_DIRECT 4

struct ma_netns_info {
	__u32 flags; /* MA_NETNS_F_* */
	__u32 pad;
};

/* The schema marker pinned next to every generation (written by the agent
 * once, read by the agent that finds the pins after a restart). */
struct ma_meta {
	__u32 schema_version; /* MA_SCHEMA_VERSION */
	__u32 program_version; /* MA_PROGRAM_VERSION */
	__u8 build_id[16];     /* hash of the exact source and -D flags */
};

/* A port of an enrolled namespace that must never be accelerated. */
struct ma_port_key {
	__u64 netns;
	__u32 port;
	__u32 pad;
};

#endif
