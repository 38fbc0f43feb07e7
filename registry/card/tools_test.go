package card

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCanonicalHash(t *testing.T) {
	base := `{"name":"get_balance","description":"Balance of an account","inputSchema":{"type":"object","properties":{"account_id":{"type":"string"}},"required":["account_id"]}}`
	h0, err := CanonicalHash(json.RawMessage(base))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(`{"description":"Balance of an account","inputSchema":{"properties":{"account_id":{"type":"string"}},"required":["account_id"],"type":"object"},"name":"get_balance"}`))
	if want := "sha256:" + hex.EncodeToString(sum[:]); h0 != want {
		t.Errorf("CanonicalHash = %s; want %s (sha256 of the RFC 8785 form)", h0, want)
	}
	tests := []struct {
		name string
		raw  string
		same bool
	}{
		{"identical", base, true},
		{"keys reordered", `{"inputSchema":{"required":["account_id"],"properties":{"account_id":{"type":"string"}},"type":"object"},"name":"get_balance","description":"Balance of an account"}`, true},
		{"whitespace", "{\n  \"name\" : \"get_balance\",\n\t\"description\": \"Balance of an account\",\r\n  \"inputSchema\": { \"type\": \"object\", \"properties\": { \"account_id\": { \"type\": \"string\" } }, \"required\": [ \"account_id\" ] }\n}\n", true},
		{"escapes", `{"name":"get\u005fbalance","description":"Balance of an account","inputSchema":{"type":"object","properties":{"account_id":{"type":"string"}},"required":["account_id"]}}`, true},
		{"description changed", strings.Replace(base, "Balance of an account", "Balance of an account.", 1), false},
		{"schema changed", strings.Replace(base, `"required":["account_id"]`, `"required":[]`, 1), false},
		{"array order changed", strings.Replace(base, `"required":["account_id"]`, `"required":["account_id","x"]`, 1), false},
		{"key added", strings.Replace(base, `{"name"`, `{"title":"Balance","name"`, 1), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := CanonicalHash(json.RawMessage(tt.raw))
			if err != nil {
				t.Fatal(err)
			}
			if (h == h0) != tt.same {
				t.Errorf("hash %s vs base %s: same = %v, want %v", h, h0, h == h0, tt.same)
			}
		})
	}
}

func TestCanonicalHashErrors(t *testing.T) {
	for _, raw := range []string{"", "  ", `{"a":1,"a":2}`, `{"a":1e400}`, `{"a":1`, `{"a":1} x`, "{\"a\":\"\xff\"}"} {
		if h, err := CanonicalHash(json.RawMessage(raw)); err == nil {
			t.Errorf("CanonicalHash(%q) = %s; want an error", raw, h)
		}
	}
}

func TestToolVersionsKeepRawDefinition(t *testing.T) {
	// Odd spacing, key order and escapes: Definition must be these bytes, not
	// a re-marshalled form.
	defs := []string{
		"{ \"name\" : \"get_balance\",\n  \"inputSchema\":{\"type\":\"object\"} , \"description\":\"Balance \\u00e9\" }",
		`{"inputSchema":{"type":"object","properties":{"amount_cents":{"type":"integer","minimum":1.0}}},"name":"transfer_funds","x-vendor":{"b":1,"a":2}}`,
	}
	c := &Card{Meta: map[string]json.RawMessage{
		GovernanceKey: json.RawMessage(`{"owner":"o","team":"t","dataClassification":"internal","riskTier":"low","upstream":{"transport":"streamable-http","url":"http://127.0.0.1:9301/mcp"}}`),
		ToolsKey:      json.RawMessage("[\n  " + defs[0] + " ,\n\t" + defs[1] + "\n]"),
	}}
	c.Name, c.Description, c.Version = "corp.finance/ledger", "Ledger", "1.0.0"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	tvs, err := c.ToolVersions()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tv := range tvs {
		got = append(got, string(tv.Definition))
		want, err := CanonicalHash(tv.Definition)
		if err != nil || tv.Hash != want {
			t.Errorf("tool %s: hash %s; want CanonicalHash(definition) = %s (%v)", tv.Name, tv.Hash, want, err)
		}
	}
	if diff := cmp.Diff(defs, got); diff != "" {
		t.Errorf("definitions (-want +got):\n%s", diff)
	}
	wantNames := []string{"get_balance", "transfer_funds"}
	for i, tv := range tvs {
		if tv.Name != wantNames[i] || tv.Server != "corp.finance/ledger" || tv.Version != "1.0.0" {
			t.Errorf("tool version %d = %s/%s@%s", i, tv.Server, tv.Name, tv.Version)
		}
	}
	// The definitions are copies: changing the card does not change them.
	c.Meta[ToolsKey][5] = 'X'
	if string(tvs[0].Definition) != defs[0] {
		t.Error("Definition aliases the card's bytes")
	}
}
