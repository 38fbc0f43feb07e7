package gossip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
)

// MaxHintSize is the largest encoded hint: memberlist's NodeMeta limit
// (memberlist.MetaMaxSize).
const MaxHintSize = 512

// hintFormat is the first byte of an encoded hint. A node that changes the
// layout uses a new value; decoders refuse values they do not know, so a new
// format is rolled out by teaching every node to decode it before any node
// sends it.
const hintFormat = 1

// Flag bits of an encoded hint (the second byte). Other bits must be zero.
const (
	flagLeaving     = 1 << 0
	flagCatalogHash = 1 << 1
	knownFlags      = flagLeaving | flagCatalogHash
)

// Limits of the hint's fields. Within them the largest hint (63-character
// namespace and trust domain, 64-character node id, 255-byte peer address,
// one protocol of 15 characters, maximal versions) encodes to 496 bytes;
// Encode refuses any combination over MaxHintSize.
const (
	maxPeerAddr    = 255
	maxProtocols   = 8
	maxTrustDomain = 255
)

var (
	namespacePattern   = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)
	nodeIDPattern      = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$`)
	trustDomainPattern = regexp.MustCompile(`^[a-z0-9._-]+$`)
	protocolPattern    = regexp.MustCompile(`^[a-z0-9][a-z0-9./_-]{0,31}$`)
	catalogHashPattern = regexp.MustCompile(`^[0-9a-f]{8}$`)
	hostPattern        = regexp.MustCompile(`^[A-Za-z0-9._:%-]+$`)
)

// PeerProtocol is the peer protocol this build speaks (HTTP/3 paths under
// /federation/v1/), the usual single entry of Hint.Protocols.
const PeerProtocol = "mcpmesh-peer/1"

// Hint is what a node advertises about itself in gossip (memberlist
// NodeMeta). Every field is a claim by whoever sent it, never authority:
// a hint only tells a node where to pull from and that a pull is worth
// making. The pull itself goes over SPIFFE mTLS to PeerAddr, and the peer
// certificate's trust domain must equal TrustDomain (and the manifest must
// map Namespace to it) before anything pulled is believed. Forged gossip can
// at most cause extra pulls.
type Hint struct {
	// Namespace is the node's BU namespace, e.g. "hr" (the config's
	// namespace pattern: a lower-case letter, then letters, digits or '-',
	// at most 63).
	Namespace string
	// TrustDomain is the BU's SPIFFE trust domain, e.g. "hr.example.corp".
	TrustDomain string
	// NodeID is the node's id inside its namespace (the config's node_id).
	NodeID string
	// PeerAddr is the host:port of the node's peer listener (HTTP/3 and
	// the SPIFFE bundle endpoint), what other BUs dial: the config's
	// federation.peer.advertise. At most 255 bytes.
	PeerAddr string
	// Protocols lists the peer protocols the node speaks, e.g.
	// []string{PeerProtocol}. One to eight entries of at most 32
	// characters.
	Protocols []string
	// CatalogVersion is the version of the node's exported catalog (its
	// registry's catalog version); zero when unknown.
	CatalogVersion uint64
	// CatalogHash is a short hash of that catalog: 8 lower-case hex digits
	// (the first 4 bytes of its digest), or empty when unknown. It lets a
	// node see that two BUs' catalogs differ at the same version.
	CatalogHash string
	// BundleSequence is the sequence number of the BU's current SPIFFE
	// trust bundle; zero when unknown.
	BundleSequence uint64
	// ManifestVersion is the version of the federation manifest the node
	// has committed; zero when it has none.
	ManifestVersion uint64
	// Leaving is set by Pool.Leave just before the node leaves, so other
	// members can tell a node that left from one that failed. Callers
	// leave it false.
	Leaving bool
}

// Name is the member name a pool uses for the node: "<namespace>/<node_id>".
func (h Hint) Name() string { return h.Namespace + "/" + h.NodeID }

// Equal reports whether two hints hold the same values.
func (h Hint) Equal(o Hint) bool {
	return h.Namespace == o.Namespace && h.TrustDomain == o.TrustDomain && h.NodeID == o.NodeID &&
		h.PeerAddr == o.PeerAddr && slices.Equal(h.Protocols, o.Protocols) &&
		h.CatalogVersion == o.CatalogVersion && h.CatalogHash == o.CatalogHash &&
		h.BundleSequence == o.BundleSequence && h.ManifestVersion == o.ManifestVersion &&
		h.Leaving == o.Leaving
}

// clone returns a copy that shares no memory with h.
func (h Hint) clone() Hint {
	h.Protocols = slices.Clone(h.Protocols)
	return h
}

// Validate checks every field against its limits. The error names the field
// and what is expected.
func (h Hint) Validate() error {
	if err := h.validateFields(); err != nil {
		return err
	}
	if n := h.encodedLen(); n > MaxHintSize {
		return fmt.Errorf("gossip hint: %d bytes encoded, over memberlist's %d-byte node metadata limit; shorten the peer address or the protocol list", n, MaxHintSize)
	}
	return nil
}

func (h Hint) validateFields() error {
	switch {
	case !namespacePattern.MatchString(h.Namespace):
		return fmt.Errorf("gossip hint: namespace %q: want a lower-case letter, then letters, digits or '-', at most 63", h.Namespace)
	case len(h.TrustDomain) > maxTrustDomain || !trustDomainPattern.MatchString(h.TrustDomain):
		return fmt.Errorf("gossip hint: trust domain %q: want lower-case letters, digits, '.', '-' or '_', at most %d, e.g. hr.example.corp", h.TrustDomain, maxTrustDomain)
	case !nodeIDPattern.MatchString(h.NodeID):
		return fmt.Errorf("gossip hint: node id %q: want lower-case letters, digits and '-', at most 64", h.NodeID)
	case !catalogHashPattern.MatchString(h.CatalogHash) && h.CatalogHash != "":
		return fmt.Errorf("gossip hint: catalog hash %q: want 8 lower-case hex digits or empty", h.CatalogHash)
	case len(h.Protocols) == 0 || len(h.Protocols) > maxProtocols:
		return fmt.Errorf("gossip hint: protocols: %d entries; want 1 to %d, e.g. [%s]", len(h.Protocols), maxProtocols, PeerProtocol)
	}
	if err := validatePeerAddr(h.PeerAddr); err != nil {
		return err
	}
	for i, p := range h.Protocols {
		if !protocolPattern.MatchString(p) {
			return fmt.Errorf("gossip hint: protocols[%d] %q: want lower-case letters, digits, '.', '/', '_' or '-', at most 32, e.g. %s", i, p, PeerProtocol)
		}
	}
	return nil
}

func validatePeerAddr(addr string) error {
	if len(addr) == 0 || len(addr) > maxPeerAddr {
		return fmt.Errorf("gossip hint: peer address: %d bytes; want host:port of 1 to %d bytes", len(addr), maxPeerAddr)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("gossip hint: peer address %q: not host:port (%w)", addr, err)
	}
	if !hostPattern.MatchString(host) {
		return fmt.Errorf("gossip hint: peer address %q: host %q is not a DNS name or IP address", addr, host)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 || strconv.FormatUint(n, 10) != port {
		return fmt.Errorf("gossip hint: peer address %q: port %q: want a number from 1 to 65535", addr, port)
	}
	return nil
}

func (h Hint) encodedLen() int {
	n := 2 + 1 + len(h.Namespace) + 1 + len(h.TrustDomain) + 1 + len(h.NodeID) + 1 + len(h.PeerAddr) + 1
	for _, p := range h.Protocols {
		n += 1 + len(p)
	}
	return n + 8 + 4 + 8 + 8
}

// Encode returns the hint's wire form, at most MaxHintSize bytes: a format
// byte, a flags byte, four length-prefixed strings (namespace, trust domain,
// node id, peer address), a count and the length-prefixed protocols, the
// catalog version, the catalog hash (4 bytes), the bundle sequence and the
// manifest version (big-endian uint64s). It fails when Validate does.
func (h Hint) Encode() ([]byte, error) {
	if err := h.Validate(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, h.encodedLen())
	var flags byte
	if h.Leaving {
		flags |= flagLeaving
	}
	if h.CatalogHash != "" {
		flags |= flagCatalogHash
	}
	b = append(b, hintFormat, flags)
	for _, s := range []string{h.Namespace, h.TrustDomain, h.NodeID, h.PeerAddr} {
		b = append(b, byte(len(s)))
		b = append(b, s...)
	}
	b = append(b, byte(len(h.Protocols)))
	for _, p := range h.Protocols {
		b = append(b, byte(len(p)))
		b = append(b, p...)
	}
	b = binary.BigEndian.AppendUint64(b, h.CatalogVersion)
	var hash [4]byte
	if h.CatalogHash != "" {
		for i := range hash {
			hash[i] = unhex(h.CatalogHash[2*i])<<4 | unhex(h.CatalogHash[2*i+1])
		}
	}
	b = append(b, hash[:]...)
	b = binary.BigEndian.AppendUint64(b, h.BundleSequence)
	b = binary.BigEndian.AppendUint64(b, h.ManifestVersion)
	return b, nil
}

func unhex(c byte) byte {
	if c >= 'a' {
		return c - 'a' + 10
	}
	return c - '0'
}

// ErrHintFormat means an encoded hint is of a format this build does not
// know: the sender runs a newer (or foreign) version. Its membership still
// counts; its hint is ignored until both sides speak a common format.
var ErrHintFormat = errors.New("gossip hint: unknown format version")

// DecodeHint parses an encoded hint. It is strict: it refuses input over
// MaxHintSize, an unknown format version (ErrHintFormat), unknown flags, a
// truncated field, trailing bytes, and any field Validate would refuse. It
// never panics, whatever the input; gossip is outside input.
func DecodeHint(b []byte) (Hint, error) {
	var h Hint
	if len(b) > MaxHintSize {
		return h, fmt.Errorf("gossip hint: %d bytes, over the %d-byte limit", len(b), MaxHintSize)
	}
	if len(b) == 0 {
		return h, errors.New("gossip hint: empty (the member advertises no hint)")
	}
	if b[0] != hintFormat {
		return h, fmt.Errorf("%w %d (this node knows %d)", ErrHintFormat, b[0], hintFormat)
	}
	d := decoder{b: b, off: 1}
	flags := d.byte("flags")
	if flags&^knownFlags != 0 && d.err == nil {
		d.err = fmt.Errorf("gossip hint: flags %#x: unknown bits %#x", flags, flags&^knownFlags)
	}
	h.Leaving = flags&flagLeaving != 0
	h.Namespace = d.str("namespace")
	h.TrustDomain = d.str("trust domain")
	h.NodeID = d.str("node id")
	h.PeerAddr = d.str("peer address")
	n := int(d.byte("protocol count"))
	if n > maxProtocols && d.err == nil {
		d.err = fmt.Errorf("gossip hint: protocol count %d over the limit of %d", n, maxProtocols)
	}
	for i := 0; i < n && d.err == nil; i++ {
		h.Protocols = append(h.Protocols, d.str(fmt.Sprintf("protocols[%d]", i)))
	}
	h.CatalogVersion = d.uint64("catalog version")
	hash := d.bytes(4, "catalog hash")
	h.BundleSequence = d.uint64("bundle sequence")
	h.ManifestVersion = d.uint64("manifest version")
	if d.err != nil {
		return Hint{}, d.err
	}
	if d.off != len(b) {
		return Hint{}, fmt.Errorf("gossip hint: %d trailing bytes after the manifest version", len(b)-d.off)
	}
	if flags&flagCatalogHash != 0 {
		h.CatalogHash = fmt.Sprintf("%x", hash)
	} else if hash[0]|hash[1]|hash[2]|hash[3] != 0 {
		return Hint{}, errors.New("gossip hint: catalog hash bytes set but the hash flag is not")
	}
	if err := h.Validate(); err != nil {
		return Hint{}, err
	}
	return h, nil
}

// decoder reads fields of an encoded hint; after the first error every read
// returns a zero value, so the caller checks err once.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) bytes(n int, field string) []byte {
	if d.err != nil {
		return make([]byte, n)
	}
	if len(d.b)-d.off < n {
		d.err = fmt.Errorf("gossip hint: truncated at %s (offset %d, want %d bytes, have %d)", field, d.off, n, len(d.b)-d.off)
		return make([]byte, n)
	}
	v := d.b[d.off : d.off+n]
	d.off += n
	return v
}

func (d *decoder) byte(field string) byte { return d.bytes(1, field)[0] }

func (d *decoder) str(field string) string {
	n := int(d.byte(field + " length"))
	return string(d.bytes(n, field))
}

func (d *decoder) uint64(field string) uint64 { return binary.BigEndian.Uint64(d.bytes(8, field)) }
