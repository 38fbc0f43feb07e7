package gossip

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func sampleHint() Hint {
	return Hint{
		Namespace:       "hr",
		TrustDomain:     "hr.example.corp",
		NodeID:          "n1",
		PeerAddr:        "10.0.0.1:8443",
		Protocols:       []string{PeerProtocol},
		CatalogVersion:  42,
		CatalogHash:     "0a1b2c3d",
		BundleSequence:  7,
		ManifestVersion: 3,
	}
}

// worstHint is the largest hint the field limits allow with the one
// protocol a node speaks today.
func worstHint() Hint {
	return Hint{
		Namespace:       "a" + strings.Repeat("b", 62),
		TrustDomain:     strings.Repeat("t", 63),
		NodeID:          strings.Repeat("n", 64),
		PeerAddr:        strings.Repeat("h", maxPeerAddr-6) + ":65535",
		Protocols:       []string{PeerProtocol},
		CatalogVersion:  math.MaxUint64,
		CatalogHash:     "ffffffff",
		BundleSequence:  math.MaxUint64,
		ManifestVersion: math.MaxUint64,
		Leaving:         true,
	}
}

func TestHintRoundTrip(t *testing.T) {
	for name, h := range map[string]Hint{
		"sample":     sampleHint(),
		"worst case": worstHint(),
		"no hash":    func() Hint { h := sampleHint(); h.CatalogHash = ""; return h }(),
		"ipv6 peer":  func() Hint { h := sampleHint(); h.PeerAddr = "[fd00::1]:8443"; return h }(),
		"many protocols": func() Hint {
			h := sampleHint()
			h.Protocols = []string{"mcpmesh-peer/1", "mcpmesh-peer/2", "mcpmesh-peer/3"}
			return h
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			b, err := h.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if len(b) > MaxHintSize {
				t.Fatalf("encoded %d bytes, over %d", len(b), MaxHintSize)
			}
			got, err := DecodeHint(b)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(h, got); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHintWorstCaseFits(t *testing.T) {
	b, err := worstHint().Encode()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("worst-case hint: %d of %d bytes", len(b), MaxHintSize)
	if len(b) > MaxHintSize {
		t.Fatalf("worst case is %d bytes", len(b))
	}
}

func TestHintValidateRefuses(t *testing.T) {
	for name, tc := range map[string]struct {
		edit func(*Hint)
		want string
	}{
		"empty namespace":    {func(h *Hint) { h.Namespace = "" }, "namespace"},
		"upper namespace":    {func(h *Hint) { h.Namespace = "HR" }, "namespace"},
		"long namespace":     {func(h *Hint) { h.Namespace = strings.Repeat("a", 64) }, "namespace"},
		"trust domain":       {func(h *Hint) { h.TrustDomain = "Hr Example" }, "trust domain"},
		"node id":            {func(h *Hint) { h.NodeID = "n1-" }, "node id"},
		"no port":            {func(h *Hint) { h.PeerAddr = "10.0.0.1" }, "peer address"},
		"port zero":          {func(h *Hint) { h.PeerAddr = "10.0.0.1:0" }, "port"},
		"port text":          {func(h *Hint) { h.PeerAddr = "10.0.0.1:https" }, "port"},
		"long peer address":  {func(h *Hint) { h.PeerAddr = strings.Repeat("h", 250) + ":65535" }, "peer address"},
		"host with space":    {func(h *Hint) { h.PeerAddr = "a b:1" }, "host"},
		"no protocols":       {func(h *Hint) { h.Protocols = nil }, "protocols"},
		"bad protocol":       {func(h *Hint) { h.Protocols = []string{"MCP peer"} }, "protocols[0]"},
		"short hash":         {func(h *Hint) { h.CatalogHash = "abc" }, "catalog hash"},
		"upper hash":         {func(h *Hint) { h.CatalogHash = "0A1B2C3D" }, "catalog hash"},
		"too many protocols": {func(h *Hint) { h.Protocols = strings.Fields(strings.Repeat("p ", 9)) }, "protocols"},
		"over 512 bytes total": {func(h *Hint) {
			*h = worstHint()
			h.Protocols = []string{strings.Repeat("a", 20), strings.Repeat("b", 20), strings.Repeat("c", 20)}
		}, "512-byte"},
	} {
		t.Run(name, func(t *testing.T) {
			h := sampleHint()
			tc.edit(&h)
			_, err := h.Encode()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Encode = %v; want an error naming %q", err, tc.want)
			}
		})
	}
}

func TestDecodeHintRefuses(t *testing.T) {
	good, err := sampleHint().Encode()
	if err != nil {
		t.Fatal(err)
	}
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	for name, tc := range map[string]struct {
		in   []byte
		want string
	}{
		"empty":          {nil, "empty"},
		"oversize":       {make([]byte, MaxHintSize+1), "over the 512-byte limit"},
		"unknown format": {mutate(func(b []byte) []byte { b[0] = 2; return b }), "unknown format version 2"},
		"unknown flag":   {mutate(func(b []byte) []byte { b[1] |= 0x80; return b }), "unknown bits"},
		"truncated":      {good[:len(good)-1], "truncated at manifest version"},
		"cut in string":  {good[:4], "truncated at namespace"},
		"trailing":       {append(bytes.Clone(good), 0), "trailing"},
		"hash flag off":  {mutate(func(b []byte) []byte { b[1] &^= flagCatalogHash; return b }), "hash flag"},
		"bad namespace":  {mutate(func(b []byte) []byte { b[3] = 'H'; return b }), "namespace"},
		"length overrun": {mutate(func(b []byte) []byte { b[2] = 255; return b }), "truncated"},
	} {
		t.Run(name, func(t *testing.T) {
			h, err := DecodeHint(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("DecodeHint = %+v, %v; want an error containing %q", h, err, tc.want)
			}
		})
	}
	if _, err := DecodeHint([]byte{9, 0}); !errors.Is(err, ErrHintFormat) {
		t.Errorf("unknown format: %v; want ErrHintFormat", err)
	}
}

// FuzzDecodeHint feeds gossip-sized garbage to the decoder: it must never
// panic, and whatever it accepts must be a valid hint that encodes back to
// exactly the input (the format has one encoding per hint).
func FuzzDecodeHint(f *testing.F) {
	for _, h := range []Hint{sampleHint(), worstHint(), {Namespace: "a", TrustDomain: "b", NodeID: "c", PeerAddr: "d:1", Protocols: []string{"p"}}} {
		b, err := h.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Add([]byte{1, 0, 255})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := DecodeHint(b)
		if err != nil {
			return
		}
		if err := h.Validate(); err != nil {
			t.Fatalf("decoded an invalid hint: %v", err)
		}
		again, err := h.Encode()
		if err != nil {
			t.Fatalf("decoded hint does not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n in  %x\n out %x", b, again)
		}
	})
}
