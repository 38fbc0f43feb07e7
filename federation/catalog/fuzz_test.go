package catalog

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/mcpmesh/mcpmesh/registry/card"
	"github.com/mcpmesh/mcpmesh/registry/state"
)

// FuzzDecodeCatalog feeds arbitrary bytes to the consumer's side of
// catalog sync, as a hostile exporter could send them: decoding and
// importing must never panic, every refusal is a *DecodeError, and what
// is accepted holds up (names fit /mcp, pins match definitions, schemas
// are objects).
func FuzzDecodeCatalog(f *testing.F) {
	tool := state.ExportedTool{Server: "corp.finance/ledger", Version: "1.0.0", Name: "generate_report",
		Definition: json.RawMessage(`{"name":"generate_report","description":"d","inputSchema":{"type":"object","properties":{"m":{"type":"string"}}}}`),
		State:      card.StateApproved, Scopes: []string{"reports:read"}}
	tool.Hash, _ = card.CanonicalHash(tool.Definition)
	c := Catalog{Consumer: "hr.example.corp", Version: 9, Tools: []state.ExportedTool{tool}}
	c.Hash, _ = state.CatalogHash(c.Tools)
	good, _ := json.Marshal(c)
	f.Add(good)
	empty, _ := json.Marshal(Catalog{Consumer: "hr.example.corp", Hash: func() string { h, _ := state.CatalogHash(nil); return h }(), Tools: []state.ExportedTool{}})
	f.Add(empty)
	kc := Catalog{Consumer: "hr.example.corp", Version: 10, Tools: []state.ExportedTool{},
		Killed: []state.KilledTool{{Server: "corp.finance/ledger", Name: "transfer_funds", Scope: state.KillTool, Reason: "incident 7"}}}
	kc.Hash, _ = state.CatalogHashOf(kc.Tools, kc.Killed)
	killed, _ := json.Marshal(kc)
	f.Add(killed)
	f.Add([]byte(`{"consumer":"hr.example.corp","version":1,"hash":"x","tools":[{"name":"a"}]}`))
	f.Add([]byte(`{"consumer":"hr.example.corp","version":18446744073709551615,"hash":"","tools":null}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := DecodeCatalog(raw)
		if err != nil {
			if !errors.As(err, new(*DecodeError)) {
				t.Fatalf("DecodeCatalog error %T: %v", err, err)
			}
			return
		}
		tools, killed, err := c.Import("finance", hrTD)
		if err != nil {
			if !errors.As(err, new(*DecodeError)) {
				t.Fatalf("Import error %T: %v", err, err)
			}
			return
		}
		for _, it := range tools {
			if !card.ValidToolName(it.MCPName("finance")) {
				t.Fatalf("accepted /mcp name %q", it.MCPName("finance"))
			}
			if h, err := card.CanonicalHash(it.Definition); err != nil || h != it.Hash {
				t.Fatalf("accepted a pin that does not match: %s vs %s (%v)", it.Hash, h, err)
			}
			var schema map[string]any
			if err := json.Unmarshal(it.InputSchema, &schema); err != nil || schema["type"] != "object" {
				t.Fatalf("accepted input schema %s", it.InputSchema)
			}
			if err := state.ValidateImportedTool("finance", it); err != nil {
				t.Fatalf("accepted a tool the state machine refuses: %v", err)
			}
		}
		if err := state.ValidateKilledImports("finance", tools, killed); err != nil {
			t.Fatalf("accepted killed entries the state machine refuses: %v", err)
		}
	})
}
