package config

import (
	"fmt"
	"net"
	"regexp"
	"time"
)

// FederationConfig joins the node to the mesh of all BUs: the gossip pool
// that finds other BUs' nodes, the peer listener (HTTP/3 over QUIC,
// SPIFFE mTLS) that serves them the exported catalog and forwarded calls,
// the SPIFFE bundle endpoint, and central security's signing key that
// every federation manifest is checked against. Federation is off while
// peer.listen is empty; the node then serves its own BU only.
type FederationConfig struct {
	// Mesh names the mesh. It is the gossip label: pools with other labels
	// never merge. Every node of every BU uses the same value. Default
	// "mcpmesh".
	Mesh string `yaml:"mesh"`
	// ManifestKeyFile names a PEM file holding central security's public
	// key (ECDSA P-256 or Ed25519). Every manifest pushed to the node must
	// carry a valid signature by it. Required with federation on.
	ManifestKeyFile string `yaml:"manifest_key_file"`
	// Peer is the listener other BUs' nodes call.
	Peer PeerConfig `yaml:"peer"`
	// Gossip is the memberlist pool shared by the nodes of all BUs.
	Gossip GossipConfig `yaml:"gossip"`
	// AssertionTTL is the lifetime of the federation assertion the node
	// mints for a call it forwards to another BU. Default 60s; between 1s
	// and 60s.
	AssertionTTL time.Duration `yaml:"assertion_ttl"`
	// CallTimeout bounds one call forwarded to another BU, all attempts
	// on its nodes together. Default 30s.
	CallTimeout time.Duration `yaml:"call_timeout"`
	// SyncInterval is how often the leader asks each exporting BU for its
	// catalog when no gossip hint arrives (a long poll answers at once on
	// a change). Default 30s.
	SyncInterval time.Duration `yaml:"sync_interval"`
}

// PeerConfig is the node's peer listener: HTTP/3 (UDP) for catalog sync and
// forwarded calls, and on the same port number over TCP the HTTPS SPIFFE
// bundle endpoint (https_spiffe profile).
type PeerConfig struct {
	// Listen is the host:port bound on UDP and TCP. Setting it turns
	// federation on.
	Listen string `yaml:"listen"`
	// Advertise is the host:port other BUs' nodes dial, sent in gossip.
	// Default Listen; it must not be an unspecified address.
	Advertise string `yaml:"advertise"`
}

// GossipConfig is the node's member of the mesh-wide memberlist pool.
type GossipConfig struct {
	// Listen is the host:port memberlist binds (UDP and TCP). Required
	// with federation on.
	Listen string `yaml:"listen"`
	// Advertise is the address other members reach this one at. Default
	// Listen; it must not be an unspecified address.
	Advertise string `yaml:"advertise"`
	// Join lists gossip addresses of members to join at start (any BU's
	// nodes). A node that reaches none keeps trying in the background.
	Join []string `yaml:"join"`
	// KeyringFile names a file of gossip encryption keys, one base64 key
	// (16, 24 or 32 bytes) per line; the first encrypts, all decrypt, so
	// keys rotate by adding the new key second, then moving it first,
	// then removing the old one. Every node of the mesh needs the same
	// keys. Required with federation on: gossip is never clear text.
	KeyringFile string `yaml:"keyring_file"`
}

// Federation defaults.
const (
	DefaultMesh                   = "mcpmesh"
	DefaultAssertionTTL           = 60 * time.Second
	DefaultFederationCallTimeout  = 30 * time.Second
	DefaultFederationSyncInterval = 30 * time.Second
)

// Enabled reports whether the node joins a mesh.
func (f FederationConfig) Enabled() bool { return f.Peer.Listen != "" }

// PeerAdvertise is the peer address other BUs' nodes dial.
func (f FederationConfig) PeerAdvertise() string {
	if f.Peer.Advertise != "" {
		return f.Peer.Advertise
	}
	return f.Peer.Listen
}

// GossipAdvertise is the gossip address other members reach.
func (f FederationConfig) GossipAdvertise() string {
	if f.Gossip.Advertise != "" {
		return f.Gossip.Advertise
	}
	return f.Gossip.Listen
}

var meshPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,62}$`)

// validate checks the federation section; with federation off only the
// values that were set anyway are checked.
func (f *FederationConfig) validate() error {
	switch {
	case !meshPattern.MatchString(f.Mesh):
		return fmt.Errorf("federation.mesh: %q; want lower-case letters, digits, '.' and '-', at most 63, e.g. corp-mesh", f.Mesh)
	case f.AssertionTTL < time.Second || f.AssertionTTL > 60*time.Second:
		return fmt.Errorf("federation.assertion_ttl: %s; want from 1s to 60s (an assertion is good for one call)", f.AssertionTTL)
	case f.CallTimeout <= 0:
		return fmt.Errorf("federation.call_timeout: %s; want a positive duration such as 30s", f.CallTimeout)
	case f.SyncInterval < time.Second:
		return fmt.Errorf("federation.sync_interval: %s; want at least 1s, e.g. 30s", f.SyncInterval)
	}
	if !f.Enabled() {
		if f.Gossip.Listen != "" || len(f.Gossip.Join) > 0 {
			return fmt.Errorf("federation.gossip: set, but federation.peer.listen is empty; set peer.listen to join the mesh, or remove the gossip section")
		}
		return nil
	}
	checks := []struct{ key, addr string }{
		{"federation.peer.listen", f.Peer.Listen},
		{"federation.gossip.listen", f.Gossip.Listen},
	}
	for _, c := range checks {
		if c.addr == "" {
			return fmt.Errorf("%s: missing; federation needs it, e.g. 0.0.0.0:7946", c.key)
		}
		if _, _, err := net.SplitHostPort(c.addr); err != nil {
			return fmt.Errorf("%s: %q is not host:port (%v)", c.key, c.addr, err)
		}
	}
	advertised := []struct{ key, addr string }{
		{"federation.peer.advertise", f.PeerAdvertise()},
		{"federation.gossip.advertise", f.GossipAdvertise()},
	}
	for _, a := range advertised {
		host, _, err := net.SplitHostPort(a.addr)
		if err != nil {
			return fmt.Errorf("%s: %q is not host:port (%v)", a.key, a.addr, err)
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() || host == "" {
			return fmt.Errorf("%s: %q is not an address other nodes can dial; set it when listening on all interfaces", a.key, a.addr)
		}
	}
	for i, j := range f.Gossip.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			return fmt.Errorf("federation.gossip.join[%d]: %q is not host:port (%v)", i, j, err)
		}
	}
	if f.ManifestKeyFile == "" {
		return fmt.Errorf("federation.manifest_key_file: missing; federation needs central security's public key (PEM) to check manifests")
	}
	if f.Gossip.KeyringFile == "" {
		return fmt.Errorf("federation.gossip.keyring_file: missing; gossip is always encrypted (make a key with `mcpmesh trust gossip-key`)")
	}
	return nil
}
