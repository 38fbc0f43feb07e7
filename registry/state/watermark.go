package state

import (
	"context"
	"sync"
)

// Watermark is a Raft index that others wait for: the FSM's applied index,
// and the index a reader of the state (the MCP gateway) has caught up to.
// The zero value is ready to use at index 0.
type Watermark struct {
	mu sync.Mutex
	v  uint64
	// ch is closed and replaced whenever v moves; nil until first needed.
	ch chan struct{}
}

// Load returns the index.
func (w *Watermark) Load() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.v
}

// Raise moves the index up to v; a lower v changes nothing.
func (w *Watermark) Raise(v uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if v > w.v {
		w.move(v)
	}
}

// Reset moves the index to v, down too (a snapshot restore does that).
func (w *Watermark) Reset(v uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.move(v)
}

func (w *Watermark) move(v uint64) {
	w.v = v
	if w.ch != nil {
		close(w.ch)
		w.ch = nil
	}
}

// Wait blocks until the index is at least v, or ctx ends; it returns the
// index it saw last.
func (w *Watermark) Wait(ctx context.Context, v uint64) (uint64, error) {
	for {
		w.mu.Lock()
		cur := w.v
		if cur >= v {
			w.mu.Unlock()
			return cur, nil
		}
		if w.ch == nil {
			w.ch = make(chan struct{})
		}
		ch := w.ch
		w.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return cur, ctx.Err()
		}
	}
}
