// Package api serves a namespace's admin and registry API under /v1/: server
// cards and their lifecycle, tenants, API keys, version profiles, policies,
// kill switches, cluster membership and snapshots. It is JSON over HTTP;
// the CLI (`mcpmesh registry`, `tenant`, `kill`, `members`, `operator`,
// ...) is its client.
//
// It owns request decoding, validation before anything is proposed to Raft,
// and the mapping of errors to HTTP statuses. It does not own
// authentication: every request must carry a Principal put there by the
// node's admin authenticator (see package node/adminauth); a request
// without one is refused.
//
// Reads are served from the local replica. Add ?consistent=true to read
// only after every write committed before the request (a barrier through
// the leader).
package api
