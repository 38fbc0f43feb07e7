// Command exampleserver runs one of mcpmesh's example upstream MCP servers
// (package examples/servers) by hand, over Streamable HTTP or stdio:
//
//	go run ./examples/servers/cmd/exampleserver -server ledger -version 2.0.0 \
//	    -jwks-url http://127.0.0.1:7101/.well-known/mcpmesh/jwks.json
//	go run ./examples/servers/cmd/exampleserver -server directory -stateless=false -jwks-url ...
//
// By default it listens where the server's card says the upstream is (for
// ledger 1.0.0, http://127.0.0.1:9301/mcp), so a registry seeded from
// examples/catalog reaches it. Tool calls must carry a token of the mcpmesh
// node (-jwks-url is where its key set is, -issuer its BU's issuer, by
// default that of the example BU: spiffe://hr.example.corp/mcpmesh/gateway
// for the directory, spiffe://finance.example.corp/mcpmesh/gateway for the
// ledger); without -jwks-url every tool call is refused. It stops on
// SIGINT or SIGTERM. It owns flag handling only; the servers live in
// package servers.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mcpmesh/mcpmesh/examples/servers"
	"github.com/mcpmesh/mcpmesh/trust/tokens"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// config is what the flags ask for.
type config struct {
	server    string // card name
	version   string
	listen    string // host:port; "" = the card's
	path      string // "" = the card's
	stateless bool
	stdio     bool
	jwksURL   string // the node's key set; "" refuses every tool call
	issuer    string
}

// defaultIssuers are the issuers of the example BUs' nodes.
var defaultIssuers = map[string]string{
	servers.DirectoryName: "spiffe://hr.example.corp/mcpmesh/gateway",
	servers.LedgerName:    "spiffe://finance.example.corp/mcpmesh/gateway",
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "exampleserver:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, slog.New(slog.NewTextHandler(os.Stderr, nil))); err != nil {
		fmt.Fprintln(os.Stderr, "exampleserver:", err)
		os.Exit(1)
	}
}

// parseFlags turns the command line into a config.
func parseFlags(args []string, out io.Writer) (config, error) {
	fs := flag.NewFlagSet("exampleserver", flag.ContinueOnError)
	fs.SetOutput(out)
	server := fs.String("server", "directory", "example server: directory (corp.hr/directory) or ledger (corp.finance/ledger)")
	version := fs.String("version", "1.0.0", "server version: 1.0.0 for directory; 1.0.0 or 2.0.0 for ledger")
	listen := fs.String("listen", "", "address to listen on, such as 127.0.0.1:9301 (default: the card's upstream URL)")
	path := fs.String("path", "", "HTTP path of the MCP endpoint (default: the card's upstream URL path, /mcp)")
	stateless := fs.Bool("stateless", true, "serve 2026-07-28 style without sessions; false keeps legacy sessions (2025-11-25/2025-06-18)")
	stdio := fs.Bool("stdio", false, "serve on stdin/stdout instead of HTTP")
	jwksURL := fs.String("jwks-url", "", "the mcpmesh node's key set, http(s)://NODE/.well-known/mcpmesh/jwks.json; tool calls must carry its tokens")
	issuer := fs.String("issuer", "", "issuer of the node's tokens, spiffe://TRUST-DOMAIN/mcpmesh/gateway (default: the example BU's)")
	fs.Usage = func() {
		fmt.Fprintf(out, "usage: exampleserver [-server directory|ledger] [-version V] [-listen ADDR] [-stateless=BOOL] [-stdio]\n\n"+
			"Runs an example upstream MCP server of mcpmesh with the tools of its card in examples/catalog.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q; see -h", fs.Arg(0))
	}
	cfg := config{version: *version, listen: *listen, path: *path, stateless: *stateless, stdio: *stdio, jwksURL: *jwksURL, issuer: *issuer}
	switch *server {
	case "directory", servers.DirectoryName:
		cfg.server = servers.DirectoryName
	case "ledger", servers.LedgerName:
		cfg.server = servers.LedgerName
	default:
		return config{}, fmt.Errorf("unknown -server %q: use directory or ledger", *server)
	}
	if cfg.issuer == "" {
		cfg.issuer = defaultIssuers[cfg.server]
	}
	return cfg, nil
}

// run serves the configured example until ctx is done.
func run(ctx context.Context, cfg config, log *slog.Logger) error {
	var opts []servers.Option
	if cfg.jwksURL != "" {
		v, err := tokens.NewVerifier(tokens.VerifierConfig{Issuer: cfg.issuer, Audience: cfg.server, JWKSURL: cfg.jwksURL})
		if err != nil {
			return fmt.Errorf("token verifier: %w", err)
		}
		opts = append(opts, servers.WithVerifier(v))
	} else {
		log.Warn("no -jwks-url: every tool call will be refused (calls must carry a token of the mcpmesh node)")
	}
	s, err := servers.New(cfg.server, cfg.version, opts...)
	if err != nil {
		return fmt.Errorf("create server: %w", err)
	}
	if cfg.stdio {
		if err := s.Run(ctx, &mcp.StdioTransport{}); err != nil && ctx.Err() == nil {
			return fmt.Errorf("serve on stdio: %w", err)
		}
		return nil
	}
	if cfg.listen == "" || cfg.path == "" {
		c, err := servers.Card(cfg.server, cfg.version)
		if err != nil {
			return err
		}
		g, err := c.Governance()
		if err != nil {
			return fmt.Errorf("read the upstream of %s@%s: %w", cfg.server, cfg.version, err)
		}
		u, err := url.Parse(g.Upstream.URL)
		if err != nil {
			return fmt.Errorf("read the upstream URL of %s@%s: %w", cfg.server, cfg.version, err)
		}
		if cfg.listen == "" {
			cfg.listen = u.Host
		}
		if cfg.path == "" {
			cfg.path = u.Path
		}
	}
	mux := http.NewServeMux()
	mux.Handle(cfg.path, servers.Handler(s, cfg.stateless))
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another example running? pick another -listen)", cfg.listen, err)
	}
	// Requests live in ctx, so a client's open stream (a legacy session's
	// GET) ends when the server stops, instead of holding Shutdown until
	// its deadline.
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	mode := "stateless (2026-07-28 style; legacy clients too)"
	if !cfg.stateless {
		mode = "with legacy sessions (2025-11-25/2025-06-18)"
	}
	log.Info("serving example MCP server", "server", cfg.server, "version", cfg.version,
		"url", "http://"+ln.Addr().String()+cfg.path, "mode", mode)

	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve HTTP: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	return nil
}
