package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/mcpmesh/mcpmesh/node"
	"github.com/mcpmesh/mcpmesh/node/config"
)

// startProfile starts a CPU profile into path ("" for none) and returns
// the function that ends it, which also writes the allocation profile so
// far (pprof's allocs: bytes and objects allocated, by call site) next to
// it, with .pprof replaced by .allocs.pprof.
func startProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("CPU profile: %w", err)
	}
	return sync.OnceFunc(func() {
		pprof.StopCPUProfile()
		f.Close()
		if af, err := os.Create(strings.TrimSuffix(path, ".pprof") + ".allocs.pprof"); err == nil {
			pprof.Lookup("allocs").WriteTo(af, 0)
			af.Close()
		}
	}), nil
}

// runNodeRole is the profiling variant of `mcpmesh node -config FILE`: the
// same node package, wired as cmd/mcpmesh wires it (a text logger on
// stderr at the config's level, a metrics registry with the Go and process
// collectors), in a process that writes a CPU profile, since the node
// serves no pprof. Unlike the binary it does not route Raft's go-metrics
// into Prometheus; with one idle node Raft emits next to nothing.
func runNodeRole(ctx context.Context, cfgPath, profilePath string) error {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(cfg.Log.Level)); err != nil {
		return fmt.Errorf("log.level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	node.TuneGC() // as mcpmesh node does
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	stop, err := startProfile(profilePath)
	if err != nil {
		return err
	}
	n, err := node.New(cfg, node.WithLogger(logger), node.WithMetricsRegistry(reg))
	if err != nil {
		stop()
		return err
	}
	nctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(nctx) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		// End the profile before draining: legacy sessions' open streams
		// can hold the drain up to http.shutdown_timeout.
		stop()
		cancel()
		err = <-done
	}
	stop()
	cancel()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}
