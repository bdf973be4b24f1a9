/* SPDX-License-Identifier: GPL-2.0 */
/* All maps, in one place. Who writes and who reads each:
 *
 *  ma_sockhash   sockops inserts enrolled sockets; the kernel removes them
 *                when they close; sk_msg redirects into it. The agent
 *                counts entries and deletes one only when uninstalling, once
 *                its reader has read everything redirected to it (deleting
 *                a live socket's entry purges bytes its reader has not
 *                consumed yet).
 *  ma_pairs      sockops writes (SYN, client established, server
 *                established); sk_msg reads/settles it on a client's first
 *                send. The agent never touches it.
 *  ma_sock_state socket-local storage: sockops creates it, sk_msg and the
 *                FIN gate (fin_gate.c) read it.
 *  ma_netns,
 *  ma_endpoints,
 *  ma_excl_ports desired enrolment: written only by the agent's reconcile,
 *                read by sockops.
 *  ma_flows      one entry per paired connection: sockops creates it at the
 *                commit and deletes it when both sockets closed; the sender's
 *                sk_msg switches a direction's mode and counts what it
 *                redirected; the receiver's read tracepoint (recv.c) counts
 *                what was read; the FIN gate reads the modes. The agent only
 *                reads it (status, tests).
 *  ma_config     written by the agent (the flow-control bound, draining),
 *                read by sk_msg and the FIN gate; changing it needs no new
 *                programs.
 *  ma_counters   written by every program, read by the agent.
 *  ma_meta       schema marker: written by the agent that created the
 *                generation, read by later agents deciding adopt/replace.
 *
 * Names stay under 15 characters: the kernel truncates longer map names. */
#ifndef MESHACCEL_MAPS_H
#define MESHACCEL_MAPS_H

#include "config.h"
#include "keys.h"

BPF_SOCKHASH(ma_sockhash, struct ma_sock_key, MA_SOCKHASH_ENTRIES);
BPF_TABLE("lru_hash", struct ma_origin_key, struct ma_pair, ma_pairs, MA_PAIRS_ENTRIES);
BPF_SK_STORAGE(ma_sock_state, struct ma_sock_state_val);
BPF_HASH(ma_netns, __u64, struct ma_netns_info, MA_NETNS_ENTRIES);
BPF_HASH(ma_endpoints, __u32, __u64, MA_ENDPOINT_ENTRIES);
BPF_HASH(ma_excl_ports, struct ma_port_key, __u8, MA_EXCLUDED_PORT_ENTRIES);
BPF_ARRAY(ma_meta, struct ma_meta, 1);
BPF_HASH(ma_flows, struct ma_flow_key, struct ma_flow, MA_SOCKHASH_ENTRIES);
BPF_ARRAY(ma_config, struct ma_config, 1);

#endif
