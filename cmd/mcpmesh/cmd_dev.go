package main

import (
	"context"
	"io"
	"log/slog"
	"os"

	"github.com/mcpmesh/mcpmesh/node"
	"github.com/mcpmesh/mcpmesh/node/dev"
)

func runDev(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("dev", "dev [-data DIR] [-base-port 7700]")
	data := fs.String("data", "mcpmesh-dev", "directory for the dev mesh's state, CAs, tokens and dev.json")
	base := fs.Int("base-port", 7700, "BU i serves HTTP on base-port+i, Raft on base-port+100+i, its peer listener on base-port+200+i and gossip on base-port+300+i; the example servers listen from base-port+400")
	verbose := fs.Bool("v", false, "log at info level instead of warn")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	lvl := slog.LevelWarn
	if *verbose {
		lvl = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	node.TuneGC()
	return dev.Run(ctx, dev.Config{DataDir: *data, BasePort: *base}, stdout, logger)
}
