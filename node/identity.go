package node

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/mcpmesh/mcpmesh/node/config"
	"github.com/mcpmesh/mcpmesh/trust/ca"
	"github.com/mcpmesh/mcpmesh/trust/spire"
	"github.com/mcpmesh/mcpmesh/trust/svid"
)

// identity is where the node's X.509-SVID and its trust domain's bundles
// come from (trust.source): the embedded CA, whose SVIDs a Rotator renews,
// or a SPIRE agent's Workload API, whose source go-spiffe keeps current.
type identity struct {
	svid x509svid.Source
	// bundle verifies peers' and clients' X.509-SVIDs.
	bundle x509bundle.Source
	// jwt holds the JWT authorities JWT-SVIDs are verified with; nil when
	// the Workload API's JWT bundles are not watched (jwt-svid off).
	jwt jwtbundle.Source
	// ca is the embedded CA; nil with the Workload API.
	ca *ca.CA
	// logAttrs describe the source for the node's start line.
	logAttrs []any
	// changed, when not nil, returns a channel closed at the source's
	// next update (the Workload API's SVID or bundles); nil with the
	// embedded CA, whose bundle does not change while the node runs.
	changed func() <-chan struct{}
	// run keeps the SVID current (or reports SPIRE's rotations) until ctx
	// ends; close releases what the source holds.
	run   func(ctx context.Context) error
	close func() error
}

// newIdentity obtains the node's first SVID for spiffe://<td>/mcpmesh/node/<id>.
// With the Workload API it waits up to trust.workload_api_timeout for SPIRE,
// and refuses an SVID for any other SPIFFE ID: peers accept only node IDs
// naming the Raft server ID.
func newIdentity(cfg config.Config, td spiffeid.TrustDomain, logger *slog.Logger) (*identity, error) {
	// Nothing is logged here: a node that fails to start says so in one
	// line; Run logs the identity with the node's start.
	nodeID, err := spiffeid.FromSegments(td, "mcpmesh", "node", cfg.NodeID)
	if err != nil {
		return nil, fmt.Errorf("node SPIFFE ID: %w", err)
	}
	if cfg.Trust.Source == config.TrustWorkloadAPI {
		// Node.New takes no context; the wait is bounded by StartTimeout.
		src, err := spire.New(context.Background(), spire.Config{
			Addr:         cfg.Trust.WorkloadAPIAddr,
			ID:           nodeID,
			JWTBundles:   slices.Contains(cfg.MCP.Auth.EffectiveMethods(), "jwt-svid"),
			StartTimeout: cfg.Trust.WorkloadAPITimeout,
		}, spire.WithLogger(logger.With("component", "workload-api")))
		if err != nil {
			return nil, fmt.Errorf("trust.workload_api_addr: %w", err)
		}
		id := &identity{svid: src, bundle: src, changed: src.Changed, run: src.Run, close: src.Close}
		if slices.Contains(cfg.MCP.Auth.EffectiveMethods(), "jwt-svid") {
			id.jwt = src
		}
		id.logAttrs = []any{"identity", config.TrustWorkloadAPI, "workload_api_addr", cfg.Trust.WorkloadAPIAddr}
		return id, nil
	}
	var c *ca.CA
	if cfg.Trust.AutoInit {
		c, err = ca.LoadOrInit(cfg.Trust.CADir, td)
	} else {
		c, err = ca.Load(cfg.Trust.CADir)
	}
	if err != nil {
		return nil, fmt.Errorf("trust.ca_dir: %w (create one with `mcpmesh trust init -trust-domain %s -out %s`)", err, td, cfg.Trust.CADir)
	}
	if c.TrustDomain() != td {
		return nil, fmt.Errorf("trust.ca_dir: the CA in %s is for %s, but trust_domain is %s", cfg.Trust.CADir, c.TrustDomain(), td)
	}
	rot, err := svid.NewRotator(c, nodeID, cfg.Trust.SVIDTTL, svid.WithLogger(logger))
	if err != nil {
		return nil, fmt.Errorf("issue node SVID: %w", err)
	}
	return &identity{svid: rot, bundle: c.Bundle(), jwt: c.JWTBundle(), ca: c, run: rot.Run, close: func() error { return nil },
		logAttrs: []any{"identity", config.TrustEmbedded, "ca_dir", cfg.Trust.CADir}}, nil
}

// bundleChanged returns a channel closed when the source's bundle may
// have changed; nil (never closed) with the embedded CA.
func (id *identity) bundleChanged() <-chan struct{} {
	if id.changed == nil {
		return nil
	}
	return id.changed()
}

// startAttrs are the log attributes of the node's identity: its SPIFFE ID,
// the SVID's expiry and where it comes from.
func (id *identity) startAttrs() []any {
	s, err := id.svid.GetX509SVID()
	if err != nil {
		return append([]any{"svid_error", err.Error()}, id.logAttrs...)
	}
	return append([]any{"spiffe_id", s.ID.String(), "svid_expires", s.Certificates[0].NotAfter}, id.logAttrs...)
}
