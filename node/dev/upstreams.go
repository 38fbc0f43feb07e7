package dev

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sync/errgroup"

	"github.com/mcpmesh/mcpmesh/examples/servers"
	"github.com/mcpmesh/mcpmesh/node"
	"github.com/mcpmesh/mcpmesh/registry/card"
	"github.com/mcpmesh/mcpmesh/trust/tokens"
)

// startUpstreams serves, in this process, every catalog card that has an
// example server, at the address and path its card names (catalogCards
// moved it to its dev port). The directory
// runs as a legacy (stateful) server and the ledgers as 2026-07-28
// (stateless) ones, so the dev mesh shows both protocol eras upstream.
// Each verifies the tokens of its BU's node (namespaces: the catalog
// directory's) against the key set that node publishes.
func startUpstreams(ctx context.Context, g *errgroup.Group, cards []catalogCard, namespaces map[string]Namespace, logger *slog.Logger) error {
	for _, cc := range cards {
		f, raw := cc.file, cc.raw
		var c card.Card
		if err := json.Unmarshal(raw, &c); err != nil {
			return fmt.Errorf("dev: %s: %w", f, err)
		}
		gov, err := c.Governance()
		if err != nil {
			return fmt.Errorf("dev: %s: %w", f, err)
		}
		var opts []servers.Option
		if ns, ok := namespaces[path.Dir(f)]; ok {
			td, err := spiffeid.TrustDomainFromString(ns.TrustDomain)
			if err != nil {
				return fmt.Errorf("dev: %s: %w", f, err)
			}
			v, err := tokens.NewVerifier(tokens.VerifierConfig{Issuer: node.Issuer(td), Audience: c.Name, JWKSURL: ns.AdminURL + tokens.JWKSPath})
			if err != nil {
				return fmt.Errorf("dev: %s: %w", f, err)
			}
			opts = append(opts, servers.WithVerifier(v))
		}
		s, err := servers.New(c.Name, c.Version, opts...)
		if errors.Is(err, servers.ErrUnknownServer) || gov.Upstream.Transport != card.TransportStreamableHTTP {
			logger.Info("dev: no example server for this card; start its upstream yourself", "server", c.Name, "version", c.Version)
			continue
		}
		if err != nil {
			return fmt.Errorf("dev: %s: %w", f, err)
		}
		u, err := url.Parse(gov.Upstream.URL)
		if err != nil {
			return fmt.Errorf("dev: %s upstream url: %w", f, err)
		}
		ln, err := net.Listen("tcp", u.Host)
		if err != nil {
			return fmt.Errorf("dev: example server %s@%s needs %s (its card's upstream url): %w", c.Name, c.Version, u.Host, err)
		}
		mux := http.NewServeMux()
		mux.Handle(u.Path, servers.Handler(s, c.Name != servers.DirectoryName))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		g.Go(func() error {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("dev: example server %s: %w", c.Name, err)
			}
			return nil
		})
		g.Go(func() error {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(sctx)
			return nil
		})
	}
	return nil
}
