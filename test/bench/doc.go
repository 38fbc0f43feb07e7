// Package bench benchmarks a real 3-node mcpmesh registry cluster: real
// node processes of the mcpmesh binary on loopback, talking SPIFFE mTLS to
// each other, replicating with hashicorp/raft into pebble with fsync on
// (the product default), driven through the admin API's Go client. The
// numbers therefore include HTTP, JSON, forwarding over the node port,
// Raft replication and two fsyncs per write (leader and one follower in
// the quorum), as an administrator or the CLI would see them.
//
// What is measured:
//
//   - BenchmarkRegistryWrite/leader, /follower: one sequential client; a
//     write is one tenant put with a new owner each time (a real change,
//     one Raft entry). /follower sends it to a follower, which forwards it
//     to the leader and answers once it has applied the write itself (read
//     your writes): the difference is the cost of writing via a follower.
//     /submit-leader submits a server card with a new version each time
//     (parse and validate a card, larger entry). /leader-nosync runs on a
//     second cluster with raft.no_sync: leader / leader-nosync is the price
//     of fsync. Besides ns/op each reports p50-us and p99-us, per-write
//     latency percentiles in microseconds.
//   - BenchmarkRegistryWriteParallel/clients=N: N concurrent clients (one
//     connection each) write to the leader; writes/s is the throughput,
//     and its growth with N shows Raft batching concurrent entries into
//     one log append (group commit). ns/op is wall time per write across
//     all clients (1e9/writes-per-second).
//   - BenchmarkRegistryReadLocal and BenchmarkRegistryReadConsistent: fetch
//     one server version on a follower, from its local state or with
//     ?consistent=true (a barrier through the leader first, then waiting
//     until the follower has applied it).
//   - BenchmarkFailover: each iteration finds the leader, takes it away
//     and measures, from then on, the time until a survivor reports itself
//     leader (election-ms), until a new write through a survivor succeeds
//     (failover-ms: a write with a 1s client timeout starts every 20ms
//     through each survivor, so writes stuck behind the lost leader do
//     not hide the recovery), and until a patient writer with the CLI's
//     30s client timeout, writing through the survivor that stays
//     follower, gets a write in (follower-write-ms: what an administrator
//     sees). The killed node is then restarted and all three must be
//     ready again, untimed. It reports p50 and max of each. /defaults
//     uses the node's default Raft timeouts (500ms heartbeat and election,
//     250ms lease) and SIGKILL, which on loopback makes peers' connections
//     fail at once; /timeouts=250ms halves the timeouts through the node
//     config; /freeze sends SIGSTOP instead, so the leader hangs as a dead
//     host or a partition looks to its peers (connections neither refused
//     nor reset). Each sub-benchmark starts its own cluster. ns/op is the
//     mean of the timed part (fault to first successful write) and is best
//     ignored in favour of the metrics. Every iteration takes seconds, so
//     it skips when asked for more than 20 iterations: run it with
//     -benchtime 5x.
//   - BenchmarkAuditAppend/appenders=N: the audit path alone, no node
//     process: N goroutines append call records to one audit log
//     (node/audit) in a temporary directory, fsync on; records/s is the
//     throughput of the group commit, p50-us and p99-us the latency of one
//     Append (until its batch is durable). /nosync drops the fsync.
//   - BenchmarkFederatedIdle: the federation of BenchmarkManifestRevocation
//     (below), left idle: each node's CPU (ms of CPU per second) and
//     wake-ups (timeslices per second), summed over its threads from
//     /proc/<pid>/task/*/schedstat over -fedidle.window (default 30s).
//     Run it with -benchtime 1x; the machine's other load shows in it.
//   - BenchmarkManifestRevocation: two one-node BUs, hr and finance
//     (fsync on), federated as test/e2e's TestCrossBUCall sets them up:
//     central security's key, a manifest with hr → finance, finance
//     exporting an echo upstream to hr, an agent of hr with a warm
//     session to hr's /mcp. Each iteration signs the next manifest
//     version without the relationship (untimed), pushes it to both BUs
//     at once through the admin API (what `mcpmesh trust manifest push`
//     calls), and measures from the push's start until hr refuses the
//     agent's call of finance.echo (refused-ms: -32018, -32009 or an
//     unknown tool; any other failure fails the benchmark) and until hr
//     no longer lists it (unlisted-ms), polling each every 5ms. Then,
//     untimed, it pushes the relationship back and waits until calls
//     are answered again (logged: the catalog pull and the import's Raft
//     write). It reports p50 and max of each; ns/op is best ignored.
//   - BenchmarkKillSwitchPropagation: the same mesh; each iteration pulls
//     a kill switch on the exported tool (kind tool,
//     corp.finance/echo/echo) through the admin API (what `mcpmesh kill`
//     calls) and measures until hr refuses the agent's next call
//     (refused-ms, a call every 5ms), then releases it (`mcpmesh
//     revive`), untimed, and waits until calls work again. /exporter
//     pulls it in finance: the refusal is finance's -32012 passed on by
//     hr or, when hr has pulled finance's new catalog first (which lists
//     the tool as killed), hr's own -32012 naming finance; the log counts
//     which. /consumer pulls it in hr on the imported tool, which hr
//     names by the exporter's server and tool too, and refuses before
//     forwarding.
//
// The two take seconds per iteration and skip when asked for more than 20
// iterations: run them with -benchtime 5x (`make bench-federation` does).
// The cross-BU call's latency and CPU against a local call is measured by
// the load harness instead: `gatewayload -federation` (see its doc).
//
// The write and read benchmarks share one cluster, started on first use
// and killed when the test binary exits; the failover and no-sync ones
// start their own. Nodes keep their data in the test's temporary directory:
// if TMPDIR is a tmpfs, fsync is free and the numbers flatter the product
// (the benchmarks log a warning when they notice).
//
// Run everything as `make bench` does (it builds bin/mcpmesh first):
//
//	make build
//	MCPMESH_BIN=$PWD/bin/mcpmesh go test -tags hashicorpmetrics -run '^$' \
//	    -bench 'Registry' -benchtime 2000x ./test/bench/
//	MCPMESH_BIN=$PWD/bin/mcpmesh go test -tags hashicorpmetrics -run '^$' \
//	    -bench 'Failover' -benchtime 5x ./test/bench/
//
// Without MCPMESH_BIN the harness builds the binary once per test process.
// `go test ./test/bench/` without -bench runs nothing and starts no node.
//
// To compare two builds, run each several times and compare with benchstat
// (golang.org/x/perf/cmd/benchstat), which reports the change of every
// metric, p50-us, p99-us and writes/s included, with its significance:
//
//	go test ... -bench 'Registry' -benchtime 2000x -count 6 ./test/bench/ > old.txt
//	# change the code, make build
//	go test ... -bench 'Registry' -benchtime 2000x -count 6 ./test/bench/ > new.txt
//	benchstat old.txt new.txt
//
// Absolute times depend on the machine's disk (fsync latency) and cores;
// quote ratios measured in one run (follower/leader, consistent/local,
// leader/leader-nosync, writes/s at 16 clients over 1 client), not absolute
// times.
package bench
