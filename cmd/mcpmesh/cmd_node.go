package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	metrics "github.com/hashicorp/go-metrics"
	promsink "github.com/hashicorp/go-metrics/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/mcpmesh/mcpmesh/node"
	"github.com/mcpmesh/mcpmesh/node/config"
)

func runNode(ctx context.Context, args []string, _ io.Writer) error {
	fs := newFlagSet("node", "node -config FILE")
	path := fs.String("config", "", "node config file (YAML; see examples/cluster/node1.yaml)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *path == "" || len(pos) > 0 {
		return usagef("want -config FILE and no other arguments")
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	logger := newLogger(cfg.Log)
	node.TuneGC()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := raftMetrics(reg); err != nil {
		return err
	}
	n, err := node.New(cfg, node.WithLogger(logger), node.WithMetricsRegistry(reg))
	if err != nil {
		return err
	}
	return n.Run(ctx)
}

// raftMetrics routes hashicorp/raft's go-metrics (a process-wide global,
// which is why only the binary sets it) into the node's Prometheus registry.
func raftMetrics(reg prometheus.Registerer) error {
	sink, err := promsink.NewPrometheusSinkFrom(promsink.PrometheusOpts{Registerer: reg, Name: "mcpmesh_gometrics"})
	if err != nil {
		return fmt.Errorf("raft metrics sink: %w", err)
	}
	mc := metrics.DefaultConfig("mcpmesh")
	mc.EnableHostname = false
	mc.EnableHostnameLabel = false
	mc.EnableRuntimeMetrics = false
	if _, err := metrics.NewGlobal(mc, sink); err != nil {
		return fmt.Errorf("raft metrics: %w", err)
	}
	return nil
}

func newLogger(c config.LogConfig) *slog.Logger {
	var lvl slog.Level
	lvl.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
