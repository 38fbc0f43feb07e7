package validate

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Arguments of a realistic transfer_funds call: one valid, one with one
// violation, one with a violation in every field.
var (
	benchValid   = json.RawMessage(validTransfer)
	benchInvalid = json.RawMessage(`{"from_account":"ACC-1001","to_account":"ACC-2002","amount_cents":0,"currency":"EUR","reference":"Invoice 2026-0042","idempotency_key":"7f3c9a1e-5b2d-4e8f-9a6c-1d2e3f4a5b6c"}`)
	benchAllBad  = json.RawMessage(`{"from_account":"acc","to_account":7,"amount_cents":-1,"currency":"euro","idempotency_key":"k","extra":true}`)
)

func BenchmarkValidate(b *testing.B) {
	s := transferFunds(b)
	for _, bm := range []struct {
		name  string
		args  json.RawMessage
		valid bool
	}{
		{"transfer_funds/valid", benchValid, true},
		{"transfer_funds/invalid", benchInvalid, false},
		{"transfer_funds/all-invalid", benchAllBad, false},
	} {
		b.Run(bm.name, func(b *testing.B) {
			if err := s.Validate(bm.args); (err == nil) != bm.valid {
				b.Fatalf("Validate = %v; want valid %v", err, bm.valid)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(bm.args)))
			for b.Loop() {
				s.Validate(bm.args)
			}
		})
	}
}

// BenchmarkValidateParallel is the valid call from every core at once.
func BenchmarkValidateParallel(b *testing.B) {
	s := transferFunds(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Validate(benchValid); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkCache compares what a call pays on a cache hit with what the
// first call of a schema pays (compile), and with computing the hash, which
// belongs once per tool version, not per call.
func BenchmarkCache(b *testing.B) {
	raw := ledgerTool(b, "transfer_funds").InputSchema
	hash, err := Hash(raw)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("hit", func(b *testing.B) {
		c := NewCache(0)
		if _, err := c.Schema(hash, raw); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			c.Schema(hash, raw)
		}
	})
	b.Run("hit-parallel", func(b *testing.B) {
		c := NewCache(0)
		if _, err := c.Schema(hash, raw); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				c.Schema(hash, raw)
			}
		})
	})
	b.Run("compile", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Compile(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("hash", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			Hash(raw)
		}
	})
}

// BenchmarkDecode compares decodeArgs with the encoding/json decoding that
// jsonschema.UnmarshalJSON does, on the valid transfer_funds arguments.
func BenchmarkDecode(b *testing.B) {
	b.Run("decodeArgs", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeArgs(benchValid); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := jsonschema.UnmarshalJSON(bytes.NewReader(benchValid)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
