// Package catalog owns catalog sync between BUs: the exporter's handler
// that serves each consumer trust domain what this BU exports to it
// ([Exporter], mounted at [Path] on the peer listener), the consumer's
// [Importer] that pulls each origin's catalog on the BU leader and stores
// it in Raft, the sync message ([Catalog], [DecodeCatalog],
// [Catalog.Import]) and its metrics.
//
// It does not own the export set or the imported records (package
// registry/state: commands 27-29, [state.FSM.ExportedCatalog]), the peer
// transport (HTTP/3, SPIFFE mTLS), the manifest's relationships, or how
// the gateway lists and routes imported tools: the node wires those.
//
// Choices, recorded for operators:
//
//   - The catalog version for a consumer is the exporter's Raft index of
//     the last command that changed what that consumer is exported. The
//     state machine recomputes every consumer's catalog hash after each
//     command that can change one (a version's lifecycle, a kill switch,
//     the export set) and moves the version only when the hash changed, so
//     it is the same on every replica and rises on every change, and a
//     change to one consumer's exports never wakes another's long poll.
//   - A tool the exporter would share but has switched off with a kill
//     switch (its own or its server's) is sent apart, in Catalog.Killed,
//     with the switch's scope, reason and time and no definition, so the
//     consumer can answer its agents "switched off by <trust domain>:
//     <reason>" instead of "unknown tool". Killed entries go only to a
//     consumer that asks (KilledParam, sent by HTTPFetcher): an older
//     consumer gets the catalog it always got, in which the tool is just
//     absent. A kill, its lifting and a new reason each move the
//     consumer's catalog version, so they reach it through its long poll
//     at once.
//   - A deprecated version is exported with its sunset; the consumer hides
//     it after the sunset by its own clock ([state.ImportedTool.Live]), as
//     time passing is not a state change.
//   - The exporter long-polls on the registry's applied index (the same
//     watermark the gateway waits on): a request whose since equals the
//     current version waits up to MaxWait (25 s) or its deadline and is
//     answered 304.
//   - Only the leader imports. Each origin gets its own loop with
//     exponential backoff and jitter on errors. A new catalog replaces the
//     origin's imports whole (command 28). The sync status (last success,
//     last error) goes through Raft too (command 29), so every replica can
//     answer `mcpmesh peers` and [Importer.Stale]; a success that changed
//     nothing is committed at most once per StatusInterval (1 min), errors
//     when they change, so an idle mesh adds about one log entry per
//     origin a minute. Imports stay listed while the exporter is
//     unreachable and are stale after StaleAfter (3 min) without success.
//   - A definition whose hash changes under the same version (a rug pull
//     across BUs) is refused: the pinned record is kept and the refusal is
//     stored with the imports, shown by `mcpmesh peers` until the exporter
//     stops offering it. The state machine refuses such a change too.
//   - An origin the lead drops from the list (relationship revoked) has
//     its imports and status deleted by the leader; before the first
//     SetOrigins nothing is deleted.
//   - The consumer trusts nothing in a catalog it has not checked: size
//     (MaxCatalogBytes), unknown fields, the trust domain it was built
//     for, the hash over the tools, each tool's names (the /mcp name
//     "<namespace>.<tool>" within [A-Za-z0-9_.-]{1,128}), state and
//     deprecation, its definition decoded as an MCP tool with schemas
//     that compile as JSON Schema (node/validate), and its pin recomputed.
//     Any problem refuses the whole catalog and keeps the previous one.
package catalog
