// Package e2e holds end-to-end tests of the real mcpmesh binary: 3-node
// registry clusters on loopback, driven through the CLI and the HTTP
// surface as an operator would, with processes killed, stopped and
// restarted. It asserts what a user would notice: replication, failover,
// durability across restarts, refusal of foreign trust domains, write
// forwarding, snapshots, admin authentication, and clear one-line errors.
//
// The tests find the binary through $MCPMESH_BIN (`make e2e` sets it) or
// build it once (see test/internal/testcluster). Every wait is bounded and
// reports what it last saw. The package holds tests only.
package e2e
