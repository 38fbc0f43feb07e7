package audit

import (
	"context"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// pruneBatch bounds how many records one retention commit removes.
const pruneBatch = 10000

// Prune removes the records older than before, from the start of the
// chain, and returns how many it removed. It keeps the chain verifiable:
// the seq and hash of the last record removed stay as the anchor the
// rest is verified from. It removes only records it has verified itself
// (hash, link, place), stopping at the first that fails, so retention
// never erases the evidence of tampering; that record stays until an
// operator has looked at it (`mcpmesh audit verify`).
func (l *Log) Prune(ctx context.Context, before time.Time) (int, error) {
	removed := 0
	for {
		n, more, err := l.pruneOnce(ctx, before)
		removed += n
		if err != nil || !more {
			return removed, err
		}
	}
}

// pruneOnce removes up to pruneBatch records and reports whether more may
// be due.
func (l *Log) pruneOnce(ctx context.Context, before time.Time) (int, bool, error) {
	if err := l.acquire(); err != nil {
		return 0, false, err
	}
	defer l.mu.RUnlock()
	anchor, _, err := getPosition(l.db, keyAnchor)
	if err != nil {
		return 0, false, err
	}
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixRecord}, UpperBound: []byte{prefixRecord + 1}})
	if err != nil {
		return 0, false, fmt.Errorf("audit retention: %w", err)
	}
	defer it.Close()
	prev := anchor
	var stop string
	n := 0
	for ok := it.First(); ok && n < pruneBatch; ok = it.Next() {
		if ctx.Err() != nil {
			break
		}
		k, _ := seqOfKey(it.Key())
		e, err := decodeEntry(it.Value())
		if err != nil {
			stop = err.Error()
			break
		}
		if k != prev.seq+1 || e.seq != k || e.prev != prev.hash || chainHash(e.prev, e.seq, e.body) != e.hash {
			stop = fmt.Sprintf("record %d does not verify", k)
			break
		}
		r, err := e.record()
		if err != nil {
			stop = err.Error()
			break
		}
		if !r.Time.Before(before) {
			break
		}
		prev = position{seq: k, hash: e.hash}
		n++
	}
	if err := it.Error(); err != nil {
		return 0, false, fmt.Errorf("audit retention: %w", err)
	}
	if stop != "" {
		l.logger.Error("audit retention stopped at a record that does not verify; it and every later record are kept; run `mcpmesh audit verify`", "reason", stop)
	}
	if n == 0 {
		return 0, false, nil
	}
	b := l.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange(RecordKey(anchor.seq+1), RecordKey(prev.seq+1), nil); err != nil {
		return 0, false, fmt.Errorf("audit retention: %w", err)
	}
	if err := b.Set(keyAnchor, prev.encode(), nil); err != nil {
		return 0, false, fmt.Errorf("audit retention: %w", err)
	}
	if err := b.Commit(l.wo); err != nil {
		return 0, false, fmt.Errorf("audit retention: %w", err)
	}
	l.logger.Info("audit retention removed old records", "records", n, "through", prev.seq, "before", before.UTC().Format(time.RFC3339))
	return n, n == pruneBatch && stop == "", nil
}
