package audit

import (
	"context"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// SetObserver makes the log call fn with every record it commits from now
// on, Seq set, in seq order, from the committer, after the record is
// durable and before Append returns to its caller. So a caller that
// acknowledges what it recorded only after Append returns never
// acknowledges a record fn has not seen. fn must be quick (it holds up
// every later record) and must not call the log. Records appended before
// SetObserver was called are read with [Log.After]. A nil fn stops the
// calls.
func (l *Log) SetObserver(fn func(Record)) {
	if fn == nil {
		l.observer.Store(nil)
		return
	}
	l.observer.Store(&fn)
}

// observe hands a committed batch to the observer.
func (l *Log) observe(batch []*pending) {
	fn := l.observer.Load()
	if fn == nil {
		return
	}
	for _, p := range batch {
		if p.rec == nil {
			// Appended before the observer was set: the observer's owner
			// reads it back with After.
			continue
		}
		r := *p.rec
		r.Seq = p.seq
		(*fn)(r)
	}
}

// After calls fn with every decodable record whose seq is above seq, in
// seq order, as of one point in time, until fn returns an error, which
// After returns.
func (l *Log) After(ctx context.Context, seq uint64, fn func(Record) error) error {
	if err := l.acquire(); err != nil {
		return err
	}
	snap := l.db.NewSnapshot()
	l.mu.RUnlock()
	defer snap.Close()
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: RecordKey(seq + 1), UpperBound: []byte{prefixRecord + 1}})
	if err != nil {
		return fmt.Errorf("read audit log: %w", err)
	}
	defer it.Close()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		if n++; n%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		r, err := Decode(it.Value())
		if err != nil {
			l.logger.Warn("audit log: skipping a record that cannot be decoded; run `mcpmesh audit verify`", "key", fmt.Sprintf("%x", it.Key()), "error", err)
			continue
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("read audit log: %w", err)
	}
	return nil
}
