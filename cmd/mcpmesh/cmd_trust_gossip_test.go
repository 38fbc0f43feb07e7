package main

import (
	"bytes"
	"testing"

	"github.com/mcpmesh/mcpmesh/federation/gossip"
)

// TestTrustGossipKey: the printed line is a keyring file of one fresh
// 32-byte key, and two runs give different keys.
func TestTrustGossipKey(t *testing.T) {
	var out [2]bytes.Buffer
	for i := range out {
		if err := runTrust(t.Context(), []string{"gossip-key"}, &out[i]); err != nil {
			t.Fatal(err)
		}
		keys, err := gossip.ParseKeyring(out[i].Bytes())
		if err != nil || len(keys) != 1 || len(keys[0]) != gossip.KeySize {
			t.Fatalf("output %q: keyring %x, %v; want one %d-byte key", out[i].String(), keys, err, gossip.KeySize)
		}
	}
	if out[0].String() == out[1].String() {
		t.Fatal("two runs printed the same key")
	}
	if err := runTrust(t.Context(), []string{"gossip-key", "extra"}, &out[0]); err == nil {
		t.Fatal("an extra argument was accepted")
	}
}
