package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/google/pprof/profile"
)

// stage is a part of the node's work on a call whose CPU the run reports
// as a share of the node's, from its CPU profile: a sample counts for a
// stage when a function of the stage is on its stack (its name ends with
// one of funcs, or, for a stage with contains, has one of them in it).
type stage struct {
	name     string
	funcs    []string
	contains bool
}

func (st stage) matches(fn string) bool {
	for _, f := range st.funcs {
		if st.contains && strings.Contains(fn, f) || strings.HasSuffix(fn, f) {
			return true
		}
	}
	return false
}

// stages are the gateway's stages: the functions that do the work, not
// the middlewares around them, whose frames hold the whole rest of the
// call. The first two are authentication and policy, reported together.
var stages = []stage{
	{"authentication", []string{"/trust/agentauth.(*Authenticator).Authenticate"}, false},
	{"policy", []string{"/node/gateway.(*Gateway).decide"}, false},
	{"token minting", []string{"/trust/tokens.(*Minter).Mint"}, false},
}

// federationStages are the parts of a cross-BU call: the assertion hr
// mints and finance verifies, the QUIC and HTTP/3 transport between them
// (quic-go's packages; a warm connection repeats no handshake), the
// go-sdk client session of hr's pool, and JSON encoding and decoding
// anywhere (the gateway's, the go-sdk's).
var federationStages = []stage{
	{name: "assertion mint", funcs: []string{"/federation/assertion.(*Minter).Mint"}},
	{name: "assertion verify", funcs: []string{"/federation/assertion.(*Verifier).Verify"}},
	{name: "QUIC + HTTP/3 (quic-go)", funcs: []string{"github.com/quic-go/"}, contains: true},
	{name: "go-sdk client (pool session)", funcs: []string{"go-sdk/mcp.(*ClientSession)", "go-sdk/mcp.(*streamableClientConn)"}, contains: true},
	{name: "JSON (encoding/json, go-sdk json)", funcs: []string{"encoding/json.", "go-sdk/internal/json."}, contains: true},
}

// printShares reads a node's CPU profile and prints the share of its
// samples that each of stages, and authentication with policy together
// (the first two), took.
func printShares(w io.Writer, path string, stages []stage) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("the node's CPU profile: %w", err)
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		return fmt.Errorf("the node's CPU profile %s: %w", path, err)
	}
	vi := len(p.SampleType) - 1 // cpu nanoseconds, after the sample count
	var total int64
	in := make([]int64, len(stages))
	var authPolicy int64
	for _, s := range p.Sample {
		v := s.Value[vi]
		total += v
		hit := make([]bool, len(stages))
		for _, loc := range s.Location {
			for _, line := range loc.Line {
				if line.Function == nil {
					continue
				}
				for i, st := range stages {
					hit[i] = hit[i] || st.matches(line.Function.Name)
				}
			}
		}
		for i := range stages {
			if hit[i] {
				in[i] += v
			}
		}
		if hit[0] || hit[1] {
			authPolicy += v
		}
	}
	if total == 0 {
		return fmt.Errorf("the node's CPU profile %s has no samples", path)
	}
	pct := func(v int64) string { return fmt.Sprintf("%.1f%%", 100*float64(v)/float64(total)) }
	fmt.Fprintf(w, "\nshare of the node's CPU (profile %s, %d ms of samples over the whole run):\n", path, total/1e6)
	for i, st := range stages {
		fmt.Fprintf(w, "  %-28s %s\n", st.name, pct(in[i]))
	}
	fmt.Fprintf(w, "  %-28s %s (aim ≤ 15%%)\n", "authentication + policy", pct(authPolicy))
	return nil
}
