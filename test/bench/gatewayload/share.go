package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/google/pprof/profile"
)

// stages are the parts of the node's work on a call whose CPU the run
// reports as a share of the node's, from its CPU profile: a sample counts
// for a stage when a function of the stage is on its stack. They are the
// functions that do the work, not the middlewares around them, whose
// frames hold the whole rest of the call.
var stages = []struct {
	name  string
	funcs []string
}{
	{"authentication", []string{"/trust/agentauth.(*Authenticator).Authenticate"}},
	{"policy", []string{"/node/gateway.(*Gateway).decide"}},
	{"token minting", []string{"/trust/tokens.(*Minter).Mint"}},
}

// printShares reads the node's CPU profile and prints the share of its
// samples that each stage, and authentication with policy together, took.
func printShares(w io.Writer, path string) error {
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
					for _, fn := range st.funcs {
						hit[i] = hit[i] || strings.HasSuffix(line.Function.Name, fn)
					}
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
