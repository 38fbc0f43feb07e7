// Package card parses and validates mcpmesh server cards, pins tool
// definitions by hash, checks version strings, and defines the lifecycle
// rules of a server version.
//
// A server card is the official MCP registry's server.json document
// ([apiv0.ServerJSON]) plus two mcpmesh sections under "_meta":
//
//   - "io.mcpmesh/governance" ([Governance]): who is accountable for the
//     server, how sensitive its data is, what a call costs, and where the
//     node reaches the upstream MCP server.
//   - "io.mcpmesh/tools" ([Tool]): the tool definitions exactly as the
//     upstream advertises them. Each is pinned by [CanonicalHash], the
//     SHA-256 of its RFC 8785 canonical JSON, so a definition that changes
//     under the same version can be detected and quarantined.
//
// Every other "_meta" key (publisher-provided metadata and the like) is kept
// verbatim in [Card.Meta]. Unknown top-level keys are accepted, because
// server.json evolves, but they are not kept: store the submitted bytes if
// they must survive.
//
// The package owns the card's shape and rules: [Parse] and [Card.Validate],
// [ValidateVersion] and [CompareVersions], and the lifecycle state machine
// ([CheckTransition], [Deprecation.Validate]). It does no I/O and keeps no
// state: the registry's Raft FSM stores cards, tool versions and transitions,
// decides who may make a transition, and compares pinned hashes with what an
// upstream serves. Full JSON Schema validation of tool schemas belongs to the
// node's validation stage; this package only checks that a schema's root is
// an object schema. All functions are safe for concurrent use.
//
// Choices made here beyond the brief, recorded for operators:
//
//   - The whole card must be I-JSON (RFC 7493): duplicate object keys, invalid
//     UTF-8 and numbers outside the IEEE 754 double range are refused, because
//     different readers would disagree about what such a card says.
//   - Keys of the mcpmesh sections are case-sensitive, and the governance
//     section refuses unknown keys, so a misspelt "costPerCall" or "args" is
//     an error rather than a silent default. Tool definitions accept unknown
//     keys (the MCP tool shape evolves); they are covered by the hash.
//   - Unknown "io.mcpmesh/…" sections in "_meta" are refused: the prefix is
//     mcpmesh's.
//   - Versions refuse semver build metadata ("1.0.0+build.7"): two versions
//     that differ only in build metadata have equal precedence, so a pin
//     could not tell them apart.
//   - Upstream environment variables whose names say they hold a secret
//     (…_TOKEN, …_SECRET, …_PASSWORD, …_API_KEY, …) are refused: a card is
//     replicated and readable by every registry reader.
package card
