// Package policy decides, with Cedar (cedar-go), whether a principal may do
// what it asks at a node's MCP front door: list a catalog, call a tool
// version, read a resource, get a prompt.
//
// It owns the Cedar schema mcpmesh policies are written against
// (schema.cedarschema, also printed by `mcpmesh policy schema`), the
// compilation and validation of policy files (Compile), the entities and
// context built for each request (Request), and the Engine that holds the
// live policy set and swaps it atomically when the registry replicates a
// new one. Decisions are default deny, and a matching forbid wins over any
// permit.
//
// It does not store policies (registry/state replicates them through Raft),
// load them from disk (registry/apply and the CLI do), or turn a denial
// into an MCP error (node/gateway does).
package policy
