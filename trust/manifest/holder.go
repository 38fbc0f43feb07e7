package manifest

import (
	"bytes"
	"context"
	"crypto"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// Holder holds the node's current manifest and tells waiters when it
// changes. The zero value holds none and is ready to use; it is safe for
// concurrent use. The data plane reads it with Current on every decision
// (one atomic load).
type Holder struct {
	p atomic.Pointer[held]
}

type held struct {
	m       *Manifest
	changed chan struct{} // closed when m is replaced
}

func (h *Holder) state() *held {
	if s := h.p.Load(); s != nil {
		return s
	}
	h.p.CompareAndSwap(nil, &held{changed: make(chan struct{})})
	return h.p.Load()
}

// Load returns the manifest held, expired or not, or nil: for display.
// Decisions use Current.
func (h *Holder) Load() *Manifest { return h.state().m }

// Current returns the manifest in force at now: the one held, unless it
// has expired. Nil means federation authorizes nothing (fail closed).
func (h *Holder) Current(now time.Time) *Manifest {
	m := h.state().m
	if m == nil || m.Expired(now) {
		return nil
	}
	return m
}

// Store makes m (nil: none) the held manifest and wakes the waiters.
func (h *Holder) Store(m *Manifest) {
	next := &held{m: m, changed: make(chan struct{})}
	for {
		cur := h.state()
		if h.p.CompareAndSwap(cur, next) {
			close(cur.changed)
			return
		}
	}
}

// Changed returns a channel closed at the next Store: read it before
// Load, so a change in between is never missed.
func (h *Holder) Changed() <-chan struct{} { return h.state().changed }

// Source is where the namespace's applied manifest is read from;
// *registry/state.FSM is one.
type Source interface {
	// Manifest returns the signed manifest stored, and its version; ok is
	// false when none is stored.
	Manifest() (signed []byte, version uint64, ok bool, err error)
	// AppliedIndex is the Raft index the state reflects.
	AppliedIndex() uint64
	// WaitApplied returns once the state reflects index, or ctx ends.
	WaitApplied(ctx context.Context, index uint64) error
}

// Follow keeps h holding the manifest stored in src, opened with central
// security's public key pub, until ctx ends (it then returns nil). It
// reads the stored manifest at once and again after every registry
// change, and opens (verifies) it only when its bytes changed. A stored manifest that does not open with pub (the node
// is configured with another key than the one that accepted it) is
// logged as an error and leaves h holding nil: the node does not
// federate on a manifest it cannot check. logger may be nil.
func Follow(ctx context.Context, src Source, pub crypto.PublicKey, h *Holder, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if _, err := AlgorithmOf(pub); err != nil {
		return fmt.Errorf("follow the federation manifest: central security's key: %w", err)
	}
	var last []byte // signed bytes last opened, failed or not
	for {
		next := src.AppliedIndex() + 1
		signed, version, ok, err := src.Manifest()
		switch {
		case err != nil:
			logger.Error("federation: cannot read the stored manifest; keeping the one held", "error", err)
		case !ok:
			if h.Load() != nil {
				h.Store(nil)
			}
			last = nil
		case !bytes.Equal(signed, last):
			last = bytes.Clone(signed)
			m, err := Open(signed, pub)
			if err != nil {
				logger.Error("federation: the stored manifest does not verify with this node's central-security key; federation is closed on this node until it does (check federation.manifest_key_file against central.pub)",
					"version", version, "error", err)
				h.Store(nil)
				break
			}
			h.Store(m)
			logger.Info("federation: manifest loaded", "version", m.Version, "expires", m.Expires.UTC().Format(time.RFC3339), "trust_domains", len(m.TrustDomains), "relationships", len(m.Relationships))
		}
		if err := src.WaitApplied(ctx, next); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("follow the federation manifest: %w", err)
		}
	}
}
