/* SPDX-License-Identifier: GPL-2.0 */
/* Compile-time configuration, set by the node agent with -D when it compiles
 * the programs (meshaccel_agent.kernel.compile). Map sizes have no default
 * here: their one source is the MapSizes model of the meshaccel.io API, and a
 * build without them must fail rather than silently use another size. */
#ifndef MESHACCEL_CONFIG_H
#define MESHACCEL_CONFIG_H

/* Bump when a map's key or value layout changes: the agent refuses to
 * reuse pinned maps whose schema differs from the one it compiled. */
#ifndef MA_SCHEMA_VERSION
#define MA_SCHEMA_VERSION 3
#endif

/* Behaviour version of the programs; bumped (or overridden with -D) when a
 * new agent must replace rather than adopt a pinned datapath. */
#ifndef MA_PROGRAM_VERSION
#define MA_PROGRAM_VERSION 1
#endif

/* Fault injection for the agent's own tests: 1 makes sk_msg pass every
 * message to the stack, which the kernel self-test must catch. */
#ifndef MA_FAULT_NO_REDIRECT
#define MA_FAULT_NO_REDIRECT 0
#endif

/* Map capacities (entries):
 *   MA_SOCKHASH_ENTRIES       established sockets redirected at once (two
 *                             per connection)
 *   MA_PAIRS_ENTRIES          handshakes in flight: a SYN seen by an enrolled
 *                             server until the pair settles. LRU, so abandoned
 *                             handshakes (SYN floods) age out by themselves.
 *   MA_NETNS_ENTRIES          enrolled network namespaces
 *   MA_ENDPOINT_ENTRIES       their IPv4 addresses
 *   MA_EXCLUDED_PORT_ENTRIES  (namespace, port) pairs never accelerated */
#if !defined(MA_SOCKHASH_ENTRIES) || !defined(MA_PAIRS_ENTRIES) ||          \
	!defined(MA_NETNS_ENTRIES) || !defined(MA_ENDPOINT_ENTRIES) ||      \
	!defined(MA_EXCLUDED_PORT_ENTRIES)
#error "map sizes are set by the agent (-D MA_*_ENTRIES)"
#endif

/* Byte offsets of the kernel members the programs read through BTF
 * pointers (bpf_skc_to_tcp_sock), taken from the running kernel's BTF by the
 * agent (meshaccel_agent.kernel.btf): the headers BCC compiles with may be
 * another kernel's. The verifier checks each load against the same BTF. */
#if !defined(MA_OFF_TCP_WRITE_SEQ) || !defined(MA_OFF_TCP_COPIED_SEQ) ||    \
	!defined(MA_OFF_SK_USER_DATA) || !defined(MA_OFF_SK_WRITE_PENDING) ||  \
	!defined(MA_OFF_PSOCK_MSG_TOT_LEN) || !defined(MA_OFF_PSOCK_REFCNT)
#error "kernel member offsets are set by the agent (-D MA_OFF_*)"
#endif

#endif
