package conformance

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The parsing and judging of suite runs, on output of the real CLI
// (@modelcontextprotocol/conformance@0.2.0-alpha.12), trimmed. These run
// without the opt-in: they need neither Node.js nor the network.

const directOutput = `Running requirements 2026-07-28 (5 scenarios) against http://127.0.0.1:3911/mcp

=== Running scenario: tools-list ===
Results saved to /tmp/out/server-tools-list-2026-11-21T18-26-46-539Z

=== SUMMARY ===
✓ tools-list: 4 passed, 0 failed
✓ resources-read-text: 2 passed, 0 failed
✗ prompts-get-simple: 1 passed, 1 failed
✓ ping: 2 passed, 0 failed
✗ tasks-lifecycle: 1 passed, 8 failed
✓ json-schema-2020-12: 8 passed, 0 failed

Total: 18 passed, 9 failed

Not scored for 2026-07-28: 2 scenario(s) run, 1 failing. These do not affect conformance.
  ✗ tasks-lifecycle (extension)
  ✓ json-schema-2020-12 (pending)
`

const gatewayOutput = `=== SUMMARY ===
✓ tools-list: 4 passed, 0 failed
✗ resources-read-text: 1 passed, 1 failed
✗ prompts-get-simple: 1 passed, 1 failed
✓ ping: 2 passed, 0 failed
✗ tasks-lifecycle: 1 passed, 8 failed
✗ json-schema-2020-12: 7 passed, 1 failed

Total: 16 passed, 12 failed

Not scored for 2026-07-28: 2 scenario(s) run, 2 failing. These do not affect conformance.
  ✗ tasks-lifecycle (extension)
  ✗ json-schema-2020-12 (pending)
`

func parsed(t *testing.T, out string) *result {
	t.Helper()
	r := &result{Requirements: "2026-07-28"}
	if err := parseSummary(r, out); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestParseSummary(t *testing.T) {
	r := parsed(t, directOutput)
	if diff := cmp.Diff([]string{"tools-list", "resources-read-text", "prompts-get-simple", "ping"}, r.scored()); diff != "" {
		t.Errorf("scored scenarios (-want +got):\n%s", diff)
	}
	got := map[string]scenario{}
	for n, sc := range r.Scenarios {
		got[n] = *sc
	}
	want := map[string]scenario{
		"tools-list":          {Name: "tools-list", OK: true, Passed: 4},
		"resources-read-text": {Name: "resources-read-text", OK: true, Passed: 2},
		"prompts-get-simple":  {Name: "prompts-get-simple", Passed: 1, Failed: 1},
		"ping":                {Name: "ping", OK: true, Passed: 2},
		"tasks-lifecycle":     {Name: "tasks-lifecycle", Passed: 1, Failed: 8, NotScored: "extension"},
		"json-schema-2020-12": {Name: "json-schema-2020-12", OK: true, Passed: 8, NotScored: "pending"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("scenarios (-want +got):\n%s", diff)
	}
}

func TestParseSummaryRefusesOtherOutput(t *testing.T) {
	for name, out := range map[string]string{
		"no summary":    "npm error code E404\nnpm error 404 Not Found - GET https://registry.example/x\n",
		"other set":     strings.ReplaceAll(directOutput, "Not scored for 2026-07-28", "Not scored for 2025-11-25"),
		"unknown extra": directOutput + "  ✗ mystery (pending)\n",
	} {
		if err := parseSummary(&result{Requirements: "2026-07-28"}, out); err == nil {
			t.Errorf("%s: parsed without error", name)
		}
	}
}

func TestCompare(t *testing.T) {
	cases := []struct {
		name            string
		baseline        []string
		gatewayFailures int
		problems        []string // substrings, one per expected problem
	}{
		{
			name:            "a scenario the fixture passes fails through the gateway",
			baseline:        []string{"prompts-get-simple"},
			gatewayFailures: 1,
			problems:        []string{"1 of 4 scored scenarios of 2026-07-28 pass against the fixture directly but fail through the gateway:\n  GATEWAY FAIL  resources-read-text"},
		},
		{
			name:            "the fixture's own failure needs a baseline entry",
			gatewayFailures: 1,
			problems:        []string{"the fixture fails scored scenario prompts-get-simple", "GATEWAY FAIL  resources-read-text"},
		},
		{
			name:            "a baseline entry cannot excuse the gateway",
			baseline:        []string{"prompts-get-simple", "resources-read-text", "tasks-lifecycle"},
			gatewayFailures: 1,
			problems: []string{
				"baseline.yml lists resources-read-text under 2026-07-28, but the fixture does not fail it",
				"baseline.yml lists tasks-lifecycle under 2026-07-28, but the fixture does not fail it as a scored scenario",
				"GATEWAY FAIL  resources-read-text",
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rep := compare("2026-07-28", parsed(t, directOutput), parsed(t, gatewayOutput), c.baseline)
			if rep.gatewayFailures != c.gatewayFailures || rep.passDirect != 3 || rep.passGateway != 2 {
				t.Errorf("gateway failures %d, pass directly %d, through the gateway %d; want %d, 3, 2", rep.gatewayFailures, rep.passDirect, rep.passGateway, c.gatewayFailures)
			}
			if len(rep.problems) != len(c.problems) {
				t.Fatalf("%d problems, want %d:\n%s", len(rep.problems), len(c.problems), strings.Join(rep.problems, "\n"))
			}
			for i, p := range c.problems {
				if !strings.Contains(rep.problems[i], p) {
					t.Errorf("problem %d = %q, want it to contain %q", i, rep.problems[i], p)
				}
			}
		})
	}
}

func TestHollowPass(t *testing.T) {
	direct := &scenario{Checks: []check{
		{ID: "resources-list", Status: "SUCCESS", Details: []byte(`{"resourceCount": 3}`)},
		{ID: "read-hints", Status: "SUCCESS"},
	}}
	gateway := &scenario{Checks: []check{
		{ID: "resources-list", Status: "SUCCESS", Details: []byte(`{"resourceCount": 0}`)},
		{ID: "read-hints", Status: "SKIPPED", ErrorMessage: "resources/read was not exercised"},
	}}
	want := []string{"read-hints SKIPPED (resources/read was not exercised)", "resources-list.resourceCount 0, directly 3"}
	if diff := cmp.Diff(want, hollow(direct, gateway)); diff != "" {
		t.Errorf("notes (-want +got):\n%s", diff)
	}
	if notes := hollow(direct, direct); len(notes) != 0 {
		t.Errorf("a run compared with itself has notes: %v", notes)
	}
}
