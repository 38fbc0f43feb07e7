package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/google/pprof/profile"
)

// stage is a part of the node's work on a call whose CPU the run reports
// as a share of the node's, from its CPU profile. A sample counts for a
// stage when a function of the stage is on its stack: one whose name ends
// with one of funcs, or starts with one of pkgs (a package path and a
// dot, so that generic instantiations naming a type of that package do
// not match). With innermost, a pkgs function must moreover be the
// innermost frame of the sample among functions of pkgs and bounds: the
// stage's own work, not a handler it calls into.
type stage struct {
	name      string
	funcs     []string
	pkgs      []string
	innermost bool
	bounds    []string
}

func (st stage) matches(fn string) bool {
	for _, f := range st.funcs {
		if strings.HasSuffix(fn, f) {
			return true
		}
	}
	for _, p := range st.pkgs {
		if strings.HasPrefix(fn, p) {
			return true
		}
	}
	return false
}

// hit reports whether the sample's stack (innermost first) counts for st.
func (st stage) hit(stack []string) bool {
	for _, fn := range stack {
		if st.matches(fn) {
			return true
		}
		if st.innermost && slices.ContainsFunc(st.bounds, func(p string) bool { return strings.HasPrefix(fn, p) }) {
			return false
		}
	}
	return false
}

// stages are the gateway's stages: the functions that do the work, not
// the middlewares around them, whose frames hold the whole rest of the
// call. The first two are authentication and policy, reported together.
var stages = []stage{
	{name: "authentication", funcs: []string{"/trust/agentauth.(*Authenticator).Authenticate"}},
	{name: "policy", funcs: []string{"/node/gateway.(*Gateway).decide"}},
	{name: "token minting", funcs: []string{"/trust/tokens.(*Minter).Mint"}},
}

// federationStages are the parts of a cross-BU call: the assertion hr
// mints and finance verifies; the QUIC and HTTP/3 transport between them
// (quic-go's own work: samples whose innermost frame of quic-go, mcpmesh
// or the go-sdk is quic-go's, so not the handler the HTTP/3 server runs);
// the go-sdk client session of hr's pool; and JSON encoding and decoding
// anywhere (the gateway's, the go-sdk's).
var federationStages = []stage{
	{name: "assertion mint", funcs: []string{"/federation/assertion.(*Minter).Mint"}},
	{name: "assertion verify", funcs: []string{"/federation/assertion.(*Verifier).Verify"}},
	{name: "QUIC + HTTP/3 (quic-go)", pkgs: []string{"github.com/quic-go/"}, innermost: true,
		bounds: []string{"github.com/mcpmesh/", "github.com/modelcontextprotocol/", "net/http."}},
	{name: "go-sdk client (pool session)", pkgs: []string{"github.com/modelcontextprotocol/go-sdk/mcp.(*ClientSession)."}},
	{name: "JSON", pkgs: []string{"encoding/json.", "github.com/modelcontextprotocol/go-sdk/internal/json.", "github.com/segmentio/encoding/json."}},
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
		var stack []string
		for _, loc := range s.Location {
			// Lines of one location are inlined calls, innermost first.
			for _, line := range loc.Line {
				if line.Function != nil {
					stack = append(stack, line.Function.Name)
				}
			}
		}
		hit := make([]bool, len(stages))
		for i, st := range stages {
			hit[i] = st.hit(stack)
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
