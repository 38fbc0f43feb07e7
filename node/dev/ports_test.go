package dev

import (
	"encoding/json"
	"fmt"
	"testing"
	"testing/fstest"

	"github.com/mcpmesh/mcpmesh/examples"
	"github.com/mcpmesh/mcpmesh/registry/card"
)

// TestCatalogCardsMoveUpstreamsToTheBasePort: each example card's loopback
// upstream gets a port derived from the base port, one per card in
// catalog order, so dev meshes with different base ports do not share
// one; the rest of the card, and cards of remote or stdio upstreams, are
// kept.
func TestCatalogCardsMoveUpstreamsToTheBasePort(t *testing.T) {
	urls := func(base int) map[string]string {
		t.Helper()
		cards, err := catalogCards(examples.Catalog(), base)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, cc := range cards {
			c, err := card.Parse(cc.raw)
			if err != nil {
				t.Fatalf("%s after moving its upstream: %v", cc.file, err)
			}
			gov, _ := c.Governance()
			out[cc.file] = gov.Upstream.URL
		}
		return out
	}
	for _, base := range []int{7700, 12000} {
		got := urls(base)
		want := map[string]string{
			"finance/ledger-1.0.0.json": fmt.Sprintf("http://127.0.0.1:%d/mcp", base+400),
			"finance/ledger-2.0.0.json": fmt.Sprintf("http://127.0.0.1:%d/mcp", base+401),
			"hr/directory-1.0.0.json":   fmt.Sprintf("http://127.0.0.1:%d/mcp", base+402),
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("base %d: upstreams %v, want %v", base, got, want)
		}
	}

	remote := `{"name":"corp.x/remote","version":"1.0.0","description":"d","_meta":{"` + card.GovernanceKey + `":{"owner":"o","team":"t","dataClassification":"internal","riskTier":"low","costPerCall":0.25,"upstream":{"transport":"streamable-http","url":"https://x.example.corp/mcp"}}}}`
	stdio := `{"name":"corp.x/local","version":"1.0.0","description":"d","_meta":{"` + card.GovernanceKey + `":{"owner":"o","team":"t","dataClassification":"internal","riskTier":"low","upstream":{"transport":"stdio","command":"/bin/cat"}}}}`
	loop := `{"name":"corp.x/loop","version":"1.0.0","description":"d","_meta":{"` + card.GovernanceKey + `":{"owner":"o","team":"t","dataClassification":"internal","riskTier":"low","costPerCall":0.25,"upstream":{"transport":"streamable-http","url":"http://127.0.0.1:9999/mcp?x=1"}}}}`
	cards, err := catalogCards(fstest.MapFS{
		"x/a.json": {Data: []byte(remote)}, "x/b.json": {Data: []byte(stdio)}, "x/c.json": {Data: []byte(loop)},
	}, 20000)
	if err != nil {
		t.Fatal(err)
	}
	if string(cards[0].raw) != remote || string(cards[1].raw) != stdio {
		t.Errorf("a remote and a stdio upstream were rewritten: %s, %s", cards[0].raw, cards[1].raw)
	}
	var moved map[string]any
	json.Unmarshal(cards[2].raw, &moved)
	gov := moved["_meta"].(map[string]any)[card.GovernanceKey].(map[string]any)
	if up := gov["upstream"].(map[string]any)["url"]; up != "http://127.0.0.1:20402/mcp?x=1" || gov["costPerCall"] != 0.25 {
		t.Errorf("moved card: %s", cards[2].raw)
	}
	h1, _ := card.CanonicalHash(cards[2].raw)
	again, _ := catalogCards(fstest.MapFS{"x/a.json": {Data: []byte(remote)}, "x/b.json": {Data: []byte(stdio)}, "x/c.json": {Data: []byte(loop)}}, 20000)
	if h2, _ := card.CanonicalHash(again[2].raw); h1 != h2 {
		t.Error("the same card and base port give different registered cards")
	}
}
