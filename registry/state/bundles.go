package state

import (
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var prefixBundles = []byte("g\x00")

// bundleKey is the key of a foreign trust domain's bundle. Trust domain
// names are lower-case letters, digits, '.', '-' and '_': never 0x00.
func bundleKey(td string) []byte { return []byte("g\x00" + td) }

// MaxBundleLen bounds the SPIFFE bundle JSON of one stored bundle, in
// bytes. A bundle of a few dozen authorities is a few tens of kilobytes.
const MaxBundleLen = 1 << 20

// ForeignBundle is the SPIFFE trust bundle of another BU's trust domain,
// as the BU's leader last fetched it from that trust domain's bundle
// endpoint. Every replica trusts exactly the stored bundles (plus its own
// trust domain's); a bundle is replaced only by one with a higher
// sequence.
type ForeignBundle struct {
	// TrustDomain is the foreign trust domain's name, e.g.
	// "finance.example.corp".
	TrustDomain string `json:"trustDomain"`
	// Sequence orders the bundles of the trust domain; see PutBundle.
	Sequence uint64 `json:"sequence"`
	// Bundle is the SPIFFE bundle document (JWKS JSON) as fetched.
	Bundle []byte    `json:"bundle"`
	By     string    `json:"by"`
	At     time.Time `json:"at"`
	// Index is the Raft index of the command that stored this bundle.
	Index uint64 `json:"index"`
}

// PutBundle stores a foreign trust domain's bundle when Sequence is higher
// than the stored one's. An equal or lower sequence changes nothing and is
// not an error: two watchers (an old and a new leader) may propose the
// same bundle. Sequence is the bundle's spiffe_sequence when it carries
// one; the watcher that fetched it says how it numbers bundles without.
type PutBundle struct {
	TrustDomain string    `json:"trustDomain"`
	Sequence    uint64    `json:"sequence"`
	Bundle      []byte    `json:"bundle"`
	By          string    `json:"by"`
	At          time.Time `json:"at"`
}

// DeleteBundle forgets a foreign trust domain's bundle: its nodes and
// tokens are no longer trusted once replicas rebuild their bundle set.
// Deleting a bundle that is not stored changes nothing.
type DeleteBundle struct {
	TrustDomain string    `json:"trustDomain"`
	By          string    `json:"by"`
	At          time.Time `json:"at"`
}

// applyPutBundle checks that the bundle parses as a SPIFFE bundle of the
// trust domain, so that replicas never hold one they cannot load. These
// checks are part of what a logged PutBundle means: a later release may
// loosen them, never tighten them.
func (f *FSM) applyPutBundle(b *pebble.Batch, index uint64, c PutBundle) any {
	td, err := spiffeid.TrustDomainFromString(c.TrustDomain)
	if err != nil {
		return errorf(KindInvalid, "bundle trust domain %q: %v; want a name such as finance.example.corp", c.TrustDomain, err)
	}
	if len(c.Bundle) > MaxBundleLen {
		return errorf(KindInvalid, "bundle of %s is %d bytes: at most %d are stored", td.Name(), len(c.Bundle), MaxBundleLen)
	}
	if _, err := spiffebundle.Parse(td, c.Bundle); err != nil {
		return errorf(KindInvalid, "bundle of %s: %v; want a SPIFFE bundle document (JWKS) as a bundle endpoint serves it", td.Name(), err)
	}
	key := bundleKey(td.Name())
	if prev, found := mustGet[ForeignBundle](b, key); found && c.Sequence <= prev.Sequence {
		return ApplyResult{Index: index, Unchanged: true}
	}
	mustStage(setJSON(b, key, ForeignBundle{TrustDomain: td.Name(), Sequence: c.Sequence, Bundle: c.Bundle, By: c.By, At: c.At, Index: index}))
	return ApplyResult{Index: index}
}

func (f *FSM) applyDeleteBundle(b *pebble.Batch, index uint64, c DeleteBundle) any {
	key := bundleKey(c.TrustDomain)
	if _, found := mustGet[ForeignBundle](b, key); !found {
		return ApplyResult{Index: index, Unchanged: true}
	}
	mustStage(b.Delete(key, nil))
	return ApplyResult{Index: index}
}

// ForeignBundle returns the stored bundle of a trust domain; one not
// stored is KindNotFound.
func (f *FSM) ForeignBundle(td string) (ForeignBundle, error) {
	return getOne[ForeignBundle](f, bundleKey(td), func() error {
		return errorf(KindNotFound, "no bundle of trust domain %s is stored (the leader stores one once it fetched it from the trust domain's bundle endpoint)", td)
	})
}

// ForeignBundles returns every stored foreign bundle, by trust domain.
func (f *FSM) ForeignBundles() ([]ForeignBundle, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return scan[ForeignBundle](f.db, prefixBundles)
}
