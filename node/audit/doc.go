// Package audit is a node's tamper-evident audit log: one [Record] for every
// tool call, denial, validation failure, authentication failure and admin
// change the node handles, kept in a pebble database of its own
// (<data dir>/audit) as a hash chain.
//
// # Durability
//
// [Log.Append] returns only once the record is durable: one committer
// goroutine takes every append waiting at that moment, writes them in one
// pebble batch and fsyncs it once (group commit), then answers each caller.
// Callers answer their agent only after that, so no call is acknowledged
// without its record. A failed commit fails every append of the batch, and
// the log stays failed (fail closed) until it is reopened.
//
// # The chain
//
// Records are numbered from 1 (Seq). Each stores the SHA-256 of the record
// before it (Prev; 32 zero bytes before the first) and its own hash:
//
//	hash = SHA-256(prev hash ‖ 0x01 ‖ seq as 8 bytes big-endian ‖ body)
//
// where body is the record's JSON without its seq, prev and hash fields,
// exactly as stored. On disk:
//
//   - 'r' + seq (8 bytes, big-endian) → 0x01 ‖ seq ‖ prev ‖ hash ‖ body;
//   - "m\x00head" → seq ‖ hash of the newest record, written in the batch
//     that writes it, so a removed tail is seen even without checkpoints;
//   - "m\x00anchor" → seq ‖ hash of the last record retention removed, from
//     which the remaining chain is verified;
//   - "m\x00layout" → the layout version (1).
//
// [Verify] walks the chain and reports each record that was modified
// (its hash does not match its content), removed (a gap in the sequence),
// reordered (a record stored under another record's number), or whose link
// to its predecessor is broken, and checks the chain against the heads the
// node checkpointed through Raft ([Checkpoint]): a replica that rewrote its
// history consistently from some record on no longer matches them.
//
// # What it does not own
//
// Which events are recorded and with what fields is the callers' business
// (the gateway, the agent authenticator, the admin API); so are proposing
// checkpoints through Raft and serving the log over HTTP. The keyed hash of
// a call's arguments is computed here ([Arguments]), with a key the node
// derives from its trust domain's CA, so every replica of a BU computes the
// same hash for the same arguments.
package audit
