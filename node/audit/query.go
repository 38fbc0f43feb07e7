package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Filter selects records. Empty fields match everything.
type Filter struct {
	// Principal, Tenant and Kind must equal the record's.
	Principal string
	Tenant    string
	Kind      Kind
	// Tool matches a record whose Tool ("<server>/<tool>"), CalledAs
	// (the endpoint's name) or Server equals it.
	Tool string
	// Outcome must equal the record's.
	Outcome Outcome
	// RequestID must equal the record's: the gateway's id of the agent's
	// request, which a call forwarded to another BU keeps there, so both
	// BUs' records of one call share it. No index serves it: a query by
	// request id reads every record, but decodes only those whose stored
	// JSON holds the id (see Filter.Match).
	RequestID string
	// Since and Until bound the record's Time: Since <= Time < Until.
	Since, Until time.Time
	// Limit bounds how many records Query returns: the newest that
	// match. Zero means DefaultLimit; Export ignores it.
	Limit int
}

// DefaultLimit is the number of records Query returns when Filter.Limit
// is zero; MaxLimit is the most it returns.
const (
	DefaultLimit = 100
	MaxLimit     = 10000
)

// Match reports whether r passes the filter.
func (f Filter) Match(r Record) bool {
	switch {
	case f.Principal != "" && r.Principal != f.Principal,
		f.Tenant != "" && r.Tenant != f.Tenant,
		f.Kind != "" && r.Kind != f.Kind,
		f.Outcome != "" && r.Outcome != f.Outcome,
		f.RequestID != "" && r.RequestID != f.RequestID,
		f.Tool != "" && r.Tool != f.Tool && r.CalledAs != f.Tool && r.Server != f.Tool,
		!f.Since.IsZero() && r.Time.Before(f.Since),
		!f.Until.IsZero() && !r.Time.Before(f.Until):
		return false
	}
	return true
}

// Query returns the newest records that match f, at most f.Limit (see
// DefaultLimit and MaxLimit), oldest first. Records that cannot be decoded
// are skipped; Verify reports them.
func (l *Log) Query(ctx context.Context, f Filter) ([]Record, error) {
	limit := f.Limit
	switch {
	case limit <= 0:
		limit = DefaultLimit
	case limit > MaxLimit:
		limit = MaxLimit
	}
	var out []Record
	err := l.scan(ctx, true, f.stored(), func(r Record) (bool, error) {
		if f.Match(r) {
			out = append(out, r)
		}
		return len(out) < limit, nil
	})
	if err != nil {
		return nil, err
	}
	slices.Reverse(out)
	return out, nil
}

// Export calls fn with every record that matches f (Limit aside), oldest
// first, as of one point in time; it stops at fn's first error and returns
// it. Records that cannot be decoded are skipped; Verify reports them.
func (l *Log) Export(ctx context.Context, f Filter, fn func(Record) error) error {
	return l.scan(ctx, false, f.stored(), func(r Record) (bool, error) {
		if !f.Match(r) {
			return true, nil
		}
		return true, fn(r)
	})
}

// stored returns a test of a stored record value that is false only for
// records the filter cannot match, cheaper than decoding them; nil when
// the filter has none. Decoding a record's JSON costs far more than
// looking for a few bytes in it, and a query by request id matches one
// or two records of the whole log.
func (f Filter) stored() func(v []byte) bool {
	if f.RequestID == "" {
		return nil
	}
	// The body is the record as encoding/json writes it, so the id is in
	// it exactly as json.Marshal writes a string (same escaping). The
	// needle's unescaped quotes cannot occur inside another field's
	// string value; a false match (in the binary header) only costs a
	// decode, as Match decides.
	id, err := json.Marshal(f.RequestID)
	if err != nil {
		return nil
	}
	needle := append([]byte(`"requestId":`), id...)
	return func(v []byte) bool { return bytes.Contains(v, needle) }
}

// scan calls fn with every decodable record from a snapshot, in seq order
// (reverse: newest first), until fn returns false or an error. A record
// whose stored value keep (when not nil) refuses is skipped undecoded.
func (l *Log) scan(ctx context.Context, reverse bool, keep func([]byte) bool, fn func(Record) (bool, error)) error {
	if err := l.acquire(); err != nil {
		return err
	}
	snap := l.db.NewSnapshot()
	l.mu.RUnlock()
	defer snap.Close()
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixRecord}, UpperBound: []byte{prefixRecord + 1}})
	if err != nil {
		return fmt.Errorf("read audit log: %w", err)
	}
	defer it.Close()
	first, next := it.First, it.Next
	if reverse {
		first, next = it.Last, it.Prev
	}
	n := 0
	for ok := first(); ok; ok = next() {
		if n++; n%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		v := it.Value()
		if keep != nil && !keep(v) {
			continue
		}
		r, err := Decode(v)
		if err != nil {
			l.logger.Warn("audit log: skipping a record that cannot be decoded; run `mcpmesh audit verify`", "key", fmt.Sprintf("%x", it.Key()), "error", err)
			continue
		}
		more, err := fn(r)
		if err != nil {
			return err
		}
		if !more {
			break
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("read audit log: %w", err)
	}
	return nil
}
