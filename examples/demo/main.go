// Command demo runs the example mesh for real, as `make demo` does: two BUs
// (hr and finance), each a cluster of three `mcpmesh node` processes with
// its own trust domain and CA, federated by a manifest that a generated
// central-security key signs; the example upstream servers
// (examples/servers/cmd/exampleserver); the example catalog applied to
// each BU; and the example agent (examples/agent) calling, through one of
// hr's nodes, a tool of hr and the report finance shares with hr.
//
//	make demo                        # builds, then runs until Ctrl-C
//	go run ./examples/demo -once     # the binaries make demo left in bin/
//
// It drives everything through the mcpmesh CLI, the commands a BU's
// platform team and central security run, and prints each one. Every
// process it starts dies with it. It builds nothing: make builds
// bin/mcpmesh, bin/example-agent and bin/exampleserver first.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin/mcpmesh", "the mcpmesh binary")
	flag.StringVar(&o.agent, "agent", "bin/example-agent", "the example agent binary (examples/agent)")
	flag.StringVar(&o.server, "exampleserver", "bin/exampleserver", "the example server binary (examples/servers/cmd/exampleserver)")
	flag.StringVar(&o.dir, "dir", "", "directory for configs, state and logs (default: a new temporary directory)")
	flag.IntVar(&o.base, "base-port", 7400, "BU b (hr 0, finance 1), node k (1-3) serves HTTP on base-port+100b+k, Raft on +10, peer on +20, gossip on +30; upstreams on base-port+100b+41...; 0 picks free ports")
	flag.BoolVar(&o.once, "once", false, "exit after the agent's run, stopping every process")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	m, err := newMesh(o)
	if err == nil {
		err = m.run(ctx)
	}
	if m != nil {
		m.stop()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
	fmt.Printf("demo: stopped every process after %s; logs stay in %s\n", time.Since(start).Round(time.Second), m.dir)
}
