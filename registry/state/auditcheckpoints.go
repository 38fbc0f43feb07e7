package state

import (
	"encoding/binary"
	"encoding/hex"
	"regexp"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Each node keeps its own audit log (package node/audit), a hash chain.
// To make a rewritten history detectable, nodes commit the head of their
// chain (a record's number and hash) here every little while; a replica
// that later rewrites its records no longer matches what the BU's Raft log
// holds. The state keeps the newest maxAuditCheckpoints of each node.

// prefixAuditCheckpoints is followed by the node id, 0x00 and the record
// number (8 bytes, big-endian), so a node's checkpoints scan in order.
var prefixAuditCheckpoints = []byte("u\x00")

func auditCheckpointPrefix(node string) []byte { return []byte("u\x00" + node + "\x00") }

func auditCheckpointKey(node string, seq uint64) []byte {
	k := auditCheckpointPrefix(node)
	return binary.BigEndian.AppendUint64(k, seq)
}

// maxAuditCheckpoints bounds the checkpoints kept per node.
const maxAuditCheckpoints = 256

// auditNodeID is what a node id looks like (as node/config checks it).
var auditNodeID = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$`)

// CheckpointAudit commits the head of a node's audit chain: its record
// Seq has hash Head (hex SHA-256). Applying the same checkpoint again
// changes nothing; the same record with another hash is a conflict (the
// node's history was rewritten) and leaves the first in place.
type CheckpointAudit struct {
	Node string    `json:"node"`
	Seq  uint64    `json:"seq"`
	Head string    `json:"head"`
	At   time.Time `json:"at"`
}

// AuditCheckpoint is a committed audit chain head.
type AuditCheckpoint struct {
	Node string    `json:"node"`
	Seq  uint64    `json:"seq"`
	Head string    `json:"head"`
	At   time.Time `json:"at"`
	// Index is the Raft index that committed it.
	Index uint64 `json:"index"`
}

func (f *FSM) applyCheckpointAudit(b *pebble.Batch, index uint64, c CheckpointAudit) any {
	if !auditNodeID.MatchString(c.Node) {
		return errorf(KindInvalid, "audit checkpoint: node id %q is not valid", c.Node)
	}
	if c.Seq == 0 {
		return errorf(KindInvalid, "audit checkpoint of node %s: record number 0 does not exist", c.Node)
	}
	if h, err := hex.DecodeString(c.Head); err != nil || len(h) != 32 {
		return errorf(KindInvalid, "audit checkpoint of node %s: head %q is not a hex SHA-256", c.Node, c.Head)
	}
	if c.At.IsZero() {
		return errorf(KindInvalid, "audit checkpoint of node %s: the time is missing", c.Node)
	}
	key := auditCheckpointKey(c.Node, c.Seq)
	if prev, found := mustGet[AuditCheckpoint](b, key); found {
		if prev.Head == c.Head {
			return ApplyResult{Index: index, Unchanged: true}
		}
		return errorf(KindConflict, "audit checkpoint of node %s: record %d was checkpointed at index %d with hash %s, now %s: its audit log was rewritten; run `mcpmesh audit verify` on it",
			c.Node, c.Seq, prev.Index, prev.Head, c.Head)
	}
	mustStage(setJSON(b, key, AuditCheckpoint{Node: c.Node, Seq: c.Seq, Head: c.Head, At: c.At.UTC(), Index: index}))
	prefix := auditCheckpointPrefix(c.Node)
	if all := mustScan[AuditCheckpoint](b, prefix); len(all) > maxAuditCheckpoints {
		for _, old := range all[:len(all)-maxAuditCheckpoints] {
			mustStage(b.Delete(auditCheckpointKey(old.Node, old.Seq), nil))
		}
	}
	return ApplyResult{Index: index}
}

// AuditCheckpoints returns the kept checkpoints of node's audit chain, by
// record number.
func (f *FSM) AuditCheckpoints(node string) ([]AuditCheckpoint, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return scan[AuditCheckpoint](f.db, auditCheckpointPrefix(node))
}

// AuditHeads returns the newest checkpoint of every node, by node id.
func (f *FSM) AuditHeads() ([]AuditCheckpoint, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	all, err := scan[AuditCheckpoint](f.db, prefixAuditCheckpoints)
	if err != nil {
		return nil, err
	}
	out := []AuditCheckpoint{}
	for _, c := range all {
		if n := len(out); n > 0 && out[n-1].Node == c.Node {
			out[n-1] = c
			continue
		}
		out = append(out, c)
	}
	return out, nil
}
