package audit

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/mcpmesh/mcpmesh/internal/pebblelog"
	"github.com/mcpmesh/mcpmesh/internal/pebblesched"
)

// ErrClosed is returned by the methods of a [Log] called after Close.
var ErrClosed = errors.New("audit log is closed")

// Log is a node's audit log. Create it with [Open] and release it with
// [Log.Close]. It is safe for concurrent use.
type Log struct {
	cfg     Config
	db      *pebble.DB
	wo      *pebble.WriteOptions
	logger  *slog.Logger
	metrics *metrics
	now     func() time.Time

	// mu guards closed: senders hold it for reading while they hand a
	// record to the committer, so Close can shut the queue safely; readers
	// hold it so that Close waits for them (pebble panics when a closed DB
	// is used).
	mu     sync.RWMutex
	closed bool

	queue   chan *pending
	stopped chan struct{}

	// stateMu guards head and failed, which the committer owns.
	stateMu sync.Mutex
	head    position
	// failed is set when a commit fails: every later append fails too,
	// until the log is reopened.
	failed error

	// observer is told of every committed record (observe.go).
	observer atomic.Pointer[func(Record)]
}

// pending is one record waiting for the committer.
type pending struct {
	body []byte
	kind Kind
	// rec is the record, kept only while an observer is set.
	rec  *Record
	seq  uint64
	err  error
	done chan struct{}
}

// Open opens the audit database in cfg.Dir, creating it if needed, and
// starts the committer. The directory must not be open by another Log or
// process (pebble locks it).
func Open(cfg Config, opts ...Option) (*Log, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	o := options{logger: slog.New(slog.DiscardHandler), now: time.Now}
	for _, opt := range opts {
		opt.apply(&o)
	}
	logger := o.logger.With("component", "audit")
	popts := &pebble.Options{
		FS:                 o.fs,
		Logger:             pebblelog.New(logger, "audit"),
		FormatMajorVersion: pebble.FormatNewest,
	}
	popts.Experimental.CompactionScheduler = pebblesched.New()
	db, err := pebble.Open(cfg.Dir, popts)
	if err != nil {
		return nil, fmt.Errorf("open audit log in %s: %w", cfg.Dir, err)
	}
	l := &Log{cfg: cfg, db: db, wo: pebble.Sync, logger: logger, metrics: newMetrics(o.reg), now: o.now,
		queue: make(chan *pending, cfg.MaxBatch), stopped: make(chan struct{})}
	if cfg.NoSync {
		l.wo = pebble.NoSync
	}
	if err := l.checkLayout(); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	if l.head, err = l.findHead(); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	go l.commitLoop()
	return l, nil
}

// checkLayout records the layout version in a new database and refuses
// one written with another.
func (l *Log) checkLayout() error {
	v, closer, err := l.db.Get(keyLayout)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		if err := l.db.Set(keyLayout, []byte{layoutVersion}, pebble.Sync); err != nil {
			return fmt.Errorf("open audit log: write layout version: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("open audit log: read layout version: %w", err)
	}
	defer closer.Close()
	if len(v) != 1 || v[0] != layoutVersion {
		return fmt.Errorf("open audit log in %s: layout version %x, this build reads only %d; open it with the build that wrote it", l.cfg.Dir, v, layoutVersion)
	}
	return nil
}

// findHead returns where the next record attaches: after the newest
// record, or after the recorded head if that is further on (its tail was
// removed: the next record then leaves a gap that Verify reports rather
// than reusing the removed numbers).
func (l *Log) findHead() (position, error) {
	var head position
	if p, ok, err := getPosition(l.db, keyAnchor); err != nil {
		return position{}, err
	} else if ok {
		head = p
	}
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixRecord}, UpperBound: []byte{prefixRecord + 1}})
	if err != nil {
		return position{}, fmt.Errorf("open audit log: %w", err)
	}
	defer it.Close()
	if it.Last() {
		seq, _ := seqOfKey(it.Key())
		e, err := decodeEntry(it.Value())
		if err != nil {
			return position{}, fmt.Errorf("open audit log: newest record %d: %w; run `mcpmesh audit verify -dir %s`", seq, err, l.cfg.Dir)
		}
		head = position{seq: seq, hash: e.hash}
	}
	if err := it.Error(); err != nil {
		return position{}, fmt.Errorf("open audit log: %w", err)
	}
	recorded, ok, err := getPosition(l.db, keyHead)
	if err != nil {
		return position{}, err
	}
	if ok && recorded.seq != head.seq {
		l.logger.Error("audit log: the recorded head is not the newest record; records were removed or the store is damaged; run `mcpmesh audit verify`",
			"recorded_head", recorded.seq, "newest_record", head.seq)
		if recorded.seq > head.seq {
			head = recorded
		}
	}
	return head, nil
}

func getPosition(r pebble.Reader, key []byte) (position, bool, error) {
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return position{}, false, nil
	}
	if err != nil {
		return position{}, false, fmt.Errorf("audit log: read %q: %w", key, err)
	}
	defer closer.Close()
	p, err := decodePosition(v)
	if err != nil {
		return position{}, false, fmt.Errorf("audit log: %q: %w", key, err)
	}
	return p, true, nil
}

// Append writes rec and returns its seq once it is durable (fsynced, in a
// batch with whatever else was appended meanwhile). It sets rec's Node, and
// its Time to now when zero; Seq, Prev and Hash are assigned here. An error
// means the record may not be durable: the caller must not acknowledge
// what it records. If ctx ends while the record waits for its batch, Append
// returns ctx's error; the record may still be written.
func (l *Log) Append(ctx context.Context, rec Record) (uint64, error) {
	if rec.Time.IsZero() {
		rec.Time = l.now()
	}
	rec.Time = rec.Time.UTC()
	rec.Node = l.cfg.Node
	body, err := encodeBody(rec)
	if err != nil {
		l.metrics.failures.Inc()
		return 0, err
	}
	p := &pending{body: body, kind: rec.Kind, done: make(chan struct{})}
	if l.observer.Load() != nil {
		p.rec = &rec
	}
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		l.metrics.failures.Inc()
		return 0, ErrClosed
	}
	select {
	case l.queue <- p:
		l.mu.RUnlock()
	case <-ctx.Done():
		l.mu.RUnlock()
		l.metrics.failures.Inc()
		return 0, fmt.Errorf("audit record not written: %w", ctx.Err())
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		l.metrics.failures.Inc()
		return 0, fmt.Errorf("audit record not confirmed durable: %w", ctx.Err())
	}
	if p.err != nil {
		l.metrics.failures.Inc()
		return 0, p.err
	}
	return p.seq, nil
}

// Err reports why the log cannot take records (a failed commit, or
// Close), or nil while it can. Callers may check it before starting work
// whose record they could not write.
func (l *Log) Err() error {
	l.mu.RLock()
	closed := l.closed
	l.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	l.stateMu.Lock()
	defer l.stateMu.Unlock()
	return l.failed
}

// Head returns the seq and hex hash of the newest record (zero and ""
// before the first; after retention removed everything, the last removed
// record's).
func (l *Log) Head() (seq uint64, hash string) {
	l.stateMu.Lock()
	defer l.stateMu.Unlock()
	if l.head.seq == 0 {
		return 0, ""
	}
	return l.head.seq, hex.EncodeToString(l.head.hash[:])
}

// commitLoop is the committer: it takes every record waiting, commits
// them in one synced batch, and answers their callers. It ends when Close
// closes the queue, after committing what was queued.
func (l *Log) commitLoop() {
	defer close(l.stopped)
	batch := make([]*pending, 0, l.cfg.MaxBatch)
	for {
		p, ok := <-l.queue
		if !ok {
			return
		}
		batch = append(batch[:0], p)
	drain:
		for len(batch) < l.cfg.MaxBatch {
			select {
			case p, ok := <-l.queue:
				if !ok {
					break drain
				}
				batch = append(batch, p)
			default:
				break drain
			}
		}
		l.commit(batch)
	}
}

// commit writes one batch of records and answers their callers.
func (l *Log) commit(batch []*pending) {
	l.stateMu.Lock()
	head, failed := l.head, l.failed
	l.stateMu.Unlock()
	err := failed
	if err == nil {
		start := time.Now()
		b := l.db.NewBatch()
		for _, p := range batch {
			seq := head.seq + 1
			hash := chainHash(head.hash, seq, p.body)
			err = b.Set(RecordKey(seq), encodeEntry(entry{seq: seq, prev: head.hash, hash: hash, body: p.body}), nil)
			if err != nil {
				break
			}
			p.seq = seq
			head = position{seq: seq, hash: hash}
		}
		if err == nil {
			err = b.Set(keyHead, head.encode(), nil)
		}
		if err == nil {
			err = b.Commit(l.wo)
		}
		b.Close()
		if err != nil {
			// What pebble holds of the batch is unknown now; appending on
			// could fork the chain. Fail closed until an operator reopens.
			err = fmt.Errorf("audit log: commit of %d records failed, the node takes no more records until restarted: %w", len(batch), err)
			l.logger.Error("audit log: commit failed; refusing every record from now on", "error", err)
			l.stateMu.Lock()
			l.failed = err
			l.stateMu.Unlock()
		} else {
			l.stateMu.Lock()
			l.head = head
			l.stateMu.Unlock()
			l.metrics.commit.Observe(time.Since(start).Seconds())
			l.metrics.batch.Observe(float64(len(batch)))
		}
	}
	if err == nil {
		l.observe(batch)
	}
	for _, p := range batch {
		if err != nil {
			p.err, p.seq = err, 0
		} else {
			l.metrics.records.WithLabelValues(string(p.kind)).Inc()
		}
		close(p.done)
	}
}

// Close commits the records already handed to the committer, stops it and
// closes the database. Appends after Close fail with [ErrClosed]; so does
// a second Close.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	l.closed = true
	close(l.queue)
	l.mu.Unlock()
	<-l.stopped
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.db.Close(); err != nil {
		return fmt.Errorf("close audit log: %w", err)
	}
	return nil
}

// acquire takes the read lock for a read of the database and reports
// ErrClosed after Close. On success the caller must call l.mu.RUnlock.
func (l *Log) acquire() error {
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return ErrClosed
	}
	return nil
}
