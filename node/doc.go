// Package node runs one mcpmesh node of a BU: it loads the node's identity
// from the embedded CA, keeps its SVID fresh, starts the namespace's Raft
// replica, and serves the HTTP surface (/mcp front door, /v1/ admin API,
// /healthz, /readyz, /metrics).
//
// It owns wiring and lifecycle (start, ready, drain, stop). Each stage of
// the work lives in its own package: the registry under registry/, identity
// under trust/, admin authentication in node/adminauth, the MCP front door
// in node/gateway with its upstream connections in node/upstream, the
// audit log in node/audit (which this package opens in <data dir>/audit,
// feeds from the gateway, the agent authenticator and the admin API, and
// checkpoints through Raft: audit.go).
//
// # Lifecycle
//
// Run starts everything and blocks until its context ends. Then the node
// drains: /readyz answers 503 at once so load balancers stop sending work,
// in-flight HTTP requests get up to http.shutdown_timeout, the audit
// chain's head is checkpointed, a leader hands leadership to another
// voter, and Raft and the stores close. A second Run
// on the same data dir resumes where the first stopped.
package node
