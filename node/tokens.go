package node

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpmesh/mcpmesh/node/config"
	"github.com/mcpmesh/mcpmesh/registry/cluster"
	"github.com/mcpmesh/mcpmesh/trust/tokens"
)

// Issuer is the iss of the tokens every node of trust domain td mints
// toward upstreams: one per BU, since its replicas share the signing keys.
func Issuer(td spiffeid.TrustDomain) string { return "spiffe://" + td.Name() + "/mcpmesh/gateway" }

// newTokens builds the node's upstream token minter and the signing key
// rotator (which acts while this node leads), with their metrics labelled
// by namespace.
func newTokens(cfg config.Config, td spiffeid.TrustDomain, nodeID spiffeid.ID, cl *cluster.Cluster, logger *slog.Logger, reg prometheus.Registerer) (*tokens.Minter, *tokens.Rotator, error) {
	reg = prometheus.WrapRegistererWith(prometheus.Labels{"namespace": cfg.Namespace}, reg)
	ut := cfg.UpstreamTokens
	m, err := tokens.NewMinter(tokens.Config{Issuer: Issuer(td), Node: nodeID.String(), TTL: ut.TTL},
		tokens.WithLogger(logger), tokens.WithMetrics(reg))
	if err != nil {
		return nil, nil, err
	}
	r, err := tokens.NewRotator(tokens.RotationConfig{RotateEvery: ut.RotateEvery, TTL: ut.TTL, Leeway: ut.Leeway, PublishAhead: ut.EffectivePublishAhead()},
		cl.FSM.SigningKeys, func(ctx context.Context, cmd []byte) error {
			_, err := cl.Apply(ctx, cmd)
			return err
		}, cl.IsLeader, tokens.WithLogger(logger), tokens.WithMetrics(reg))
	if err != nil {
		return nil, nil, err
	}
	return m, r, nil
}

// loadSigningKeys hands the minter the namespace's signing keys whenever
// the registry state changes, until ctx ends.
func loadSigningKeys(ctx context.Context, cl *cluster.Cluster, m *tokens.Minter, logger *slog.Logger) error {
	for {
		next := cl.FSM.AppliedIndex() + 1
		keys, err := cl.FSM.SigningKeys()
		if err == nil {
			err = m.SetKeys(keys)
		}
		if err != nil {
			// Every replica holds the same keys: this is a bug or a
			// damaged state, not something to wait out quietly.
			logger.Error("tokens: cannot load the signing keys; upstream calls fail until they load", "error", err)
		}
		if err := cl.FSM.WaitApplied(ctx, next); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("wait for registry changes: %w", err)
		}
	}
}
