package audit

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestArguments(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	a, err := NewArguments(key, []string{"corp.finance/ledger/transfer_funds"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewArguments(key, nil) // another replica of the BU
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewArguments(bytes.Repeat([]byte{8}, 32), nil) // another BU
	if err != nil {
		t.Fatal(err)
	}
	fill := func(a *Arguments, tool, args string) Record {
		var r Record
		a.Fill(&r, tool, json.RawMessage(args))
		return r
	}
	r1 := fill(a, "corp.hr/directory/lookup", `{"q": "x", "n": 1}`)
	r2 := fill(b, "corp.hr/directory/lookup", `{"n":1,"q":"x"}`)
	if len(r1.ArgumentsHMAC) != 64 || r1.ArgumentsHMAC != r2.ArgumentsHMAC {
		t.Errorf("the same arguments hash differently (%q, %q): replicas must agree whatever the key order and spacing", r1.ArgumentsHMAC, r2.ArgumentsHMAC)
	}
	if r1.Arguments != nil {
		t.Errorf("raw arguments of an unlisted tool were kept: %s", r1.Arguments)
	}
	if r3 := fill(a, "corp.hr/directory/lookup", `{"q":"y","n":1}`); r3.ArgumentsHMAC == r1.ArgumentsHMAC {
		t.Error("different arguments hash alike")
	}
	if r4 := fill(other, "corp.hr/directory/lookup", `{"q":"x","n":1}`); r4.ArgumentsHMAC == r1.ArgumentsHMAC {
		t.Error("two keys give the same hash: the hash is not keyed")
	}
	r5 := fill(a, "corp.finance/ledger/transfer_funds", `{"amount_cents": 500}`)
	if string(r5.Arguments) != `{"amount_cents": 500}` || r5.ArgumentsHMAC == "" {
		t.Errorf("listed tool: arguments %s, hmac %q; want the raw arguments and their hash", r5.Arguments, r5.ArgumentsHMAC)
	}
	if !a.Raw("corp.finance/ledger/transfer_funds") || a.Raw("corp.finance/ledger/get_balance") {
		t.Error("Raw does not follow the list")
	}
	if r6, r7 := fill(a, "t", ""), fill(a, "t", "{}"); r6.ArgumentsHMAC != r7.ArgumentsHMAC {
		t.Error("no arguments and {} hash differently")
	}
	if _, err := NewArguments([]byte("short"), nil); err == nil {
		t.Error("a short key was accepted")
	}
}
