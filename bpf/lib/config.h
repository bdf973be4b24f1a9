/* SPDX-License-Identifier: GPL-2.0 */
/* Compile-time configuration. Every value here is a default that the node
 * agent overrides with -D when it compiles the programs (see
 * meshaccel.agent.compile), so map sizes come from the agent's config file. */
#ifndef MESHACCEL_CONFIG_H
#define MESHACCEL_CONFIG_H

/* Bump when a map's key or value layout changes: the agent refuses to
 * reuse pinned maps whose schema differs from the one it compiled. */
#ifndef MA_SCHEMA_VERSION
#define MA_SCHEMA_VERSION 1
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

/* Established sockets that can be redirected at once (two per connection). */
#ifndef MA_SOCKHASH_ENTRIES
#define MA_SOCKHASH_ENTRIES 65536
#endif

/* Handshakes in flight: a SYN seen by an enrolled server until the client's
 * first send (or the server's accept) settles the pair. LRU, so abandoned
 * handshakes (SYN floods, clients that never finish) age out by themselves. */
#ifndef MA_PAIRS_ENTRIES
#define MA_PAIRS_ENTRIES 65536
#endif

/* Enrolled network namespaces and the IPv4 addresses that belong to them. */
#ifndef MA_NETNS_ENTRIES
#define MA_NETNS_ENTRIES 4096
#endif
#ifndef MA_ENDPOINT_ENTRIES
#define MA_ENDPOINT_ENTRIES 16384
#endif
#ifndef MA_EXCLUDED_PORT_ENTRIES
#define MA_EXCLUDED_PORT_ENTRIES 16384
#endif

#endif
