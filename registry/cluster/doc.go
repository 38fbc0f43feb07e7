// Package cluster runs one replica of a namespace's registry: hashicorp/raft
// on the pebble log store, file snapshots, and the node-to-node port that
// carries both Raft replication and the cluster's own RPCs (forwarded
// writes, read barriers, joins), all over SPIFFE mTLS.
//
// It owns consensus plumbing: bootstrap and join, forwarding writes from a
// follower to the leader with a short hold-and-retry while there is none,
// consistent reads, membership and snapshots. What the commands mean is
// package state's business; who may ask is the admin API's.
//
// # The node port
//
// Every connection on the Raft address is TLS 1.3 with mutual SPIFFE
// authentication (only node SVIDs of the namespace's trust domain). After
// the handshake the dialer sends one byte: 'R' hands the connection to
// Raft's NetworkTransport, 'C' opens a stream of length-prefixed JSON
// cluster RPCs. Consul multiplexes its server port the same way.
package cluster
