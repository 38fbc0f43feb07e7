// Command gatewayload is the load benchmark of the MCP gateway: it measures
// what an mcpmesh node adds to a tools/call, next to what a plain reverse
// proxy adds, in one run on one machine.
//
// Three processes besides the client, so that each one's CPU can be read
// on its own:
//
//   - the upstream: a go-sdk MCP server with one tool, echo (its text
//     argument back as text and structuredContent), over Streamable HTTP;
//     stateless for the 2026-07-28 era, a stateful (legacy) server for
//     2025-11-25. It counts the HTTP requests and connections it receives.
//   - the proxy: httputil.ReverseProxy to the upstream, with as many idle
//     connections per host (64) as the node's upstream bulkhead.
//   - mcpmesh: a real node of the binary (`mcpmesh node`) with a generated
//     config: one node, raft.no_sync, agents authenticating with API keys,
//     log.level info (the product default). The upstream's card, pinning
//     the exact echo definition, is submitted and approved through the
//     admin API, with a tenant, an API key for the load and four Cedar
//     policies of the shape a BU writes; the node serves the tool as
//     bench.echo. Every governance control is on, set so that none
//     refuses the load: each call is authenticated, decided by policy
//     (including an approval rule, which makes the node read the call's
//     arguments), checked against four rate limits (identity, tenant,
//     tool, tenant and tool), a kill switch list (one switch in force, on
//     another agent), its tenant's monthly quota and budget (the card
//     prices a call at 0.0001 USD; usage is flushed through Raft every
//     second), validated, audited with fsync, and charged.
//
// The upstream and the proxy are this program again (-role upstream,
// -role proxy). The client is go-sdk, one session per target, reused for
// every call. Each target gets -warmup unmeasured calls, then the
// -calls measured calls are split into -rounds rounds; every round calls
// direct, proxy and mcpmesh once each, starting with a different one each
// round, so drift (other load on the machine, frequency changes, the
// client's GC) falls on all three alike. -concurrency runs calls that many
// at a time on the target's one session; a list such as 1,8 measures each
// level in turn.
//
// Reported per target: latency p50, p90, p99 and mean; the added p50 and
// p99 against direct; the CPU per call of the process in between (utime
// plus stime from /proc/<pid>/stat over that target's rounds, in clock
// ticks from `getconf CLK_TCK`, or 100 assumed when getconf fails, as the
// header says), and of the upstream and the client; upstream requests per
// call; new TCP connections opened by the client and accepted by the
// upstream (a gateway that reuses its connections opens none); then the
// mcpmesh/proxy ratios of added p50 and CPU per call against the aim of
// 1.2×, with the spread of the per-round ratio. CPU is read in whole
// ticks (10ms at 100/s) summed over many calls, so keep -calls/-rounds
// in the hundreds at least. The background CPU each gateway process burns
// while idle is shown too; it is included in its CPU per call.
//
// Then tools/list, sequentially, against each target: its latency, and the
// upstream's request counter over mcpmesh's lists, which must not move
// (the node answers tools/list from its registry state; the run fails
// otherwise). Direct lists must move it by one each, or the check proves
// nothing.
//
// Run it as `make bench-gateway` does (it builds bin/mcpmesh first):
//
//	make build
//	go run -tags hashicorpmetrics ./test/bench/gatewayload -mcpmesh bin/mcpmesh -concurrency 1,8
//
// -baseline BIN adds a fourth target: a second node, run from another
// mcpmesh binary with the same config and the same upstream, measured
// interleaved with the others, so that two builds (before and after a
// change) are compared in one run; it prints "mcpmesh / baseline". Keep
// the binary of the build before a change, e.g. `cp bin/mcpmesh
// /tmp/mcpmesh-before`.
//
// -era 2025-11-25 (or -legacy) runs every hop in the legacy era. -profile
// DIR writes CPU and allocation profiles of the upstream, the proxy and
// the node into DIR: the node, which serves no pprof, is then this
// program's profiling variant (-role node: package node wired as
// cmd/mcpmesh wires it, plus pprof), and the run ends with the share of
// the node's CPU spent authenticating, deciding policy and minting
// upstream tokens (samples with that stage's function on the stack; the
// aim for authentication and policy together is at most 15%). Read the
// profiles with
//
//	go tool pprof -top DIR/mcpmesh.pprof
//	go tool pprof -sample_index alloc_space -top DIR/mcpmesh.allocs.pprof
//
// -federation measures a cross-BU call against the same call made
// locally instead (no proxy): two one-node BUs, hr and finance, each with
// its own CA and trust domain, set up as test/e2e/federation_test.go does
// through the binary's CLI (`trust manifest keygen`, `trust init`, a
// gossip keyring and the federation: config section, `apply` of an
// exports.yaml on finance exporting echo to hr, a manifest with hr →
// finance signed with `trust manifest sign` and pushed to both with
// `trust manifest push`). The upstream is registered in both BUs
// (corp.hr/echo, corp.finance/echo), with the controls above on in both
// (in finance on hr's callers, named "hr.example.corp/…", except the
// tenant-scoped limits and quota: the caller's tenant is hr's). Three
// targets, interleaved as above:
//
//   - direct: client → upstream;
//   - local: client → hr's node → upstream (hr.echo);
//   - crossbu: client → hr's node → finance's node over HTTP/3 (SPIFFE
//     mTLS, a federation assertion per call) → upstream (finance.echo,
//     imported by hr), on hr's warm connection to finance.
//
// Reported per target: latency as above, the CPU per call of hr's and of
// finance's node process, of the upstream and the client; then the
// issue's ratios: the second hop's added latency against the first's,
// (crossbu − local) / (local − direct), at p50 (with the per-round
// spread) and p99; finance's CPU per call on crossbu against hr's on
// local (what the second node costs against the first), hr's on crossbu
// against hr's on local (what forwarding costs the first node against
// serving locally), against the aim of 1.0×. The tools/list phase is
// skipped. With -profile, the nodes are the profiling variant (DIR/hr.pprof,
// DIR/finance.pprof) and the run ends with each node's shares, including
// the assertion's mint and verify, quic-go's own work, the pool's go-sdk
// session and JSON. `make bench-federation` runs it in both eras at
// concurrency 1 and 8, then the propagation benchmarks of test/bench.
//
// Every request goes to loopback; a run is bounded by its counts and by
// -timeout, and stops its processes at the end (they also die with it).
// It measures on Linux only. Absolute times depend on the machine and on
// whatever else runs on it; quote the ratios of one run.
//
// It is a program, not a test: `go test ./test/...` runs nothing of it.
package main
