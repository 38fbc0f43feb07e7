// Package state is a namespace's registry state machine: the Raft FSM that
// applies type-byte commands to a pebble database, answers local reads, and
// produces and restores snapshots.
//
// It owns the replicated objects of one namespace (server versions with their
// cards, tool versions and lifecycle history, tenants, API keys, version
// profiles, the signing keys of the tokens its nodes mint toward
// upstreams, the kill switches pulled on tools, servers, tenants and
// agents, the tenants' quotas and budgets and their replicated usage,
// usage.go) and the rules that keep them consistent. It does not own Raft itself, forwarding or the HTTP
// API (package cluster and package api do), and card parsing and lifecycle
// rules live in package card.
//
// # Commands
//
// A log entry is one type byte followed by a JSON body. Types with the
// IgnorableFlag bit set may be skipped by a node that does not know them;
// any other unknown type stops the node (panic), because applying a log
// prefix differently from its peers would silently fork the namespace.
// Upgrade followers before leaders.
//
// # Durability
//
// State writes are not fsynced per entry: the Raft log is the durable record.
// Each apply batch also stores the applied index, so after a crash Raft's
// replay from the last snapshot skips what the state already holds.
// Snapshot syncs the state first, so the state is never behind a snapshot.
package state
