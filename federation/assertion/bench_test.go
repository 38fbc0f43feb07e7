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

// BenchmarkVerifyX5C verifies fresh x5c assertions of one SVID (the
// chain cached after the first), replay cache included: compare with
// BenchmarkVerify.
func BenchmarkVerifyX5C(b *testing.B) {
	s := newSpireMesh(b)
	now := t0
	m := newSVIDMinter(b, svidOf(b, s.hr, hrNode), hrNode, &now)
	const pool = 1 << 11
	toks := make([]string, pool)
	for i := range toks {
		toks[i] = mustMint(b, m, financeTD, aliceCall)
	}
	v := newX5CVerifier(b, s.set)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == pool {
			b.StopTimer()
			v, i = newX5CVerifier(b, s.set), 0
			b.StartTimer()
		}
		if _, err := v.Verify(toks[i], hrNode, now.Add(time.Second)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkMintX5C mints x5c assertions with the node's SVID key.
func BenchmarkMintX5C(b *testing.B) {
	s := newSpireMesh(b)
	now := t0
	m := newSVIDMinter(b, svidOf(b, s.hr, hrNode), hrNode, &now)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Mint(financeTD, aliceCall); err != nil {
			b.Fatal(err)
		}
	}
}
