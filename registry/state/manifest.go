package state

import (
	"bytes"
	"errors"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// keyManifest holds the namespace's federation manifest: there is one.
var keyManifest = []byte("f\x00manifest")

// MaxManifestSize bounds a stored signed manifest, in bytes.
const MaxManifestSize = 1 << 20

// PutManifest stores central security's signed federation manifest. The
// admin API verified Signed with central security's key and read Version
// from it before proposing; the state machine, which holds no key and
// reads no clock, only keeps versions from going back.
type PutManifest struct {
	// Signed is the manifest as central security signed it (a compact
	// JWS, trust/manifest).
	Signed  []byte    `json:"signed"`
	Version uint64    `json:"version"`
	By      string    `json:"by"`
	At      time.Time `json:"at"`
}

// StoredManifest is the namespace's federation manifest as stored.
type StoredManifest struct {
	Signed  []byte    `json:"signed"`
	Version uint64    `json:"version"`
	By      string    `json:"by"`
	At      time.Time `json:"at"`
	// Index is the Raft index of the command that stored it.
	Index uint64 `json:"index"`
}

// applyPutManifest refuses a version below the stored one (no rollback)
// and the stored version with other bytes (a version names one manifest);
// the stored version with the same bytes changes nothing, so a retried
// push is harmless.
func (f *FSM) applyPutManifest(b *pebble.Batch, index uint64, c PutManifest) any {
	switch {
	case len(c.Signed) == 0:
		return errorf(KindInvalid, "federation manifest: empty; push the signed form (mcpmesh trust manifest sign writes it)")
	case len(c.Signed) > MaxManifestSize:
		return errorf(KindInvalid, "federation manifest: %d bytes; at most %d", len(c.Signed), MaxManifestSize)
	case c.Version == 0:
		return errorf(KindInvalid, "federation manifest: version 0; versions start at 1")
	}
	prev, found := mustGet[StoredManifest](b, keyManifest)
	if found {
		switch {
		case c.Version < prev.Version:
			return errorf(KindConflict, "federation manifest version %d is older than version %d in force: a manifest never rolls back; central security signs every change under a higher version", c.Version, prev.Version)
		case c.Version == prev.Version && bytes.Equal(c.Signed, prev.Signed):
			return ApplyResult{Index: index, Unchanged: true}
		case c.Version == prev.Version:
			return errorf(KindConflict, "federation manifest version %d is already in force with other content; central security signs the change under version %d or higher", c.Version, prev.Version+1)
		}
	}
	mustStage(setJSON(b, keyManifest, StoredManifest{Signed: c.Signed, Version: c.Version, By: c.By, At: c.At, Index: index}))
	return ApplyResult{Index: index}
}

func noManifest() error {
	return errorf(KindNotFound, "no federation manifest is stored; central security pushes one with `mcpmesh trust manifest push`")
}

// StoredManifest returns the namespace's federation manifest; none
// stored is KindNotFound.
func (f *FSM) StoredManifest() (StoredManifest, error) {
	return getOne[StoredManifest](f, keyManifest, noManifest)
}

// Manifest returns the signed federation manifest stored and its
// version; ok is false when none is. It is the trust/manifest.Source the
// node follows.
func (f *FSM) Manifest() (signed []byte, version uint64, ok bool, err error) {
	m, err := f.StoredManifest()
	if errors.Is(err, ErrNotFound) {
		return nil, 0, false, nil
	}
	if err != nil {
		return nil, 0, false, err
	}
	return m.Signed, m.Version, true, nil
}
