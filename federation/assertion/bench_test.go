package assertion

import (
	"testing"
	"time"
)

func BenchmarkMint(b *testing.B) {
	ms := newMesh(b)
	now := t0
	m := newTestMinter(b, ms.hr, hrNode, &now)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Mint(financeTD, aliceCall); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify verifies fresh assertions (each jti once), replay cache
// included.
func BenchmarkVerify(b *testing.B) {
	ms := newMesh(b)
	now := t0
	m := newTestMinter(b, ms.hr, hrNode, &now)
	const pool = 1 << 11
	toks := make([]string, pool)
	for i := range toks {
		toks[i] = mustMint(b, m, financeTD, aliceCall)
	}
	v := newTestVerifier(b, ms.bundles, finNode)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == pool {
			// Every token was used once: a new verifier forgets them.
			b.StopTimer()
			v, i = newTestVerifier(b, ms.bundles, finNode), 0
			b.StartTimer()
		}
		if _, err := v.Verify(toks[i], hrNode, now.Add(time.Second)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
