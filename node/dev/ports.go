package dev

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"strconv"

	"github.com/mcpmesh/mcpmesh/registry/card"
)

// upstreamPortOffset places the example servers above the BUs' ports: the
// k-th card of the catalog (in file name order) that names a loopback
// Streamable HTTP upstream is served on BasePort+upstreamPortOffset+k, so
// two dev meshes with different base ports never collide, and a data dir
// resumed with the same base port finds its upstreams where its registry
// says they are.
const upstreamPortOffset = 400

// maxCards bounds the catalog dev serves (its ports must stay below 65536).
const maxCards = 100

// maxBasePort is the highest base port dev accepts.
const maxBasePort = 65535 - upstreamPortOffset - maxCards

// catalogCard is one server card of the catalog as dev seeds it.
type catalogCard struct {
	// file is its path in the catalog ("<namespace>/<name>.json").
	file string
	// raw is the card, its loopback upstream URL moved to its dev port.
	raw []byte
}

// catalogCards reads every card of catalog and moves each loopback
// Streamable HTTP upstream to its port derived from base (the catalog's
// cards name fixed ports, 9201, 9301, 9302, which `make demo` and the
// example server's own command use).
func catalogCards(catalog fs.FS, base int) ([]catalogCard, error) {
	files, err := fs.Glob(catalog, "*/*.json")
	if err != nil {
		return nil, err
	}
	if len(files) > maxCards {
		return nil, fmt.Errorf("dev: the catalog has %d cards; dev serves at most %d", len(files), maxCards)
	}
	out := make([]catalogCard, 0, len(files))
	for k, f := range files {
		raw, err := fs.ReadFile(catalog, f)
		if err != nil {
			return nil, err
		}
		moved, err := moveUpstream(raw, base+upstreamPortOffset+k)
		if err != nil {
			return nil, fmt.Errorf("dev: %s: %w", f, err)
		}
		out = append(out, catalogCard{file: f, raw: moved})
	}
	return out, nil
}

// moveUpstream returns raw with its upstream URL's port set to port when
// that upstream is Streamable HTTP on a loopback address; raw unchanged
// otherwise. Numbers keep their text, and the registry hashes cards
// canonically, so the same card and port give the same registered card.
func moveUpstream(raw []byte, port int) ([]byte, error) {
	var c card.Card
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, err
	}
	gov, err := c.Governance()
	if err != nil {
		return nil, err
	}
	if gov.Upstream.Transport != card.TransportStreamableHTTP {
		return raw, nil
	}
	u, err := url.Parse(gov.Upstream.URL)
	if err != nil {
		return nil, fmt.Errorf("upstream url: %w", err)
	}
	if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() {
		return raw, nil
	}
	u.Host = net.JoinHostPort(u.Hostname(), strconv.Itoa(port))
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	meta, _ := m["_meta"].(map[string]any)
	g, _ := meta[card.GovernanceKey].(map[string]any)
	up, _ := g["upstream"].(map[string]any)
	if up == nil {
		return nil, fmt.Errorf("no %s.upstream object", card.GovernanceKey)
	}
	up["url"] = u.String()
	return json.MarshalIndent(m, "", "  ")
}
