package node

import (
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpmesh/mcpmesh/node/config"
	"github.com/mcpmesh/mcpmesh/trust/agentauth"
)

// newAgentAuth builds the front door's authenticator from mcp.auth and
// counts its outcomes in mcpmesh_agent_auth_total{method,outcome}.
func newAgentAuth(cfg config.Config, td spiffeid.TrustDomain, keys agentauth.KeyStore, logger *slog.Logger, reg prometheus.Registerer) (*agentauth.Authenticator, error) {
	outcomes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "mcpmesh_agent_auth_total",
		Help:        "Agent authentications at the MCP front door by method and outcome (ok, or why it was refused).",
		ConstLabels: prometheus.Labels{"namespace": cfg.Namespace},
	}, []string{"method", "outcome"})
	if err := reg.Register(outcomes); err != nil {
		return nil, fmt.Errorf("register agent auth metrics: %w", err)
	}
	ac := agentauth.Config{
		TrustDomain:     td,
		SVIDPathPrefix:  cfg.MCP.Auth.SVIDPathPrefix,
		AnonymousRoutes: cfg.MCP.AnonymousRoutes,
	}
	for _, m := range cfg.MCP.Auth.Methods {
		ac.Methods = append(ac.Methods, agentauth.Method(m))
	}
	for _, t := range cfg.MCP.Auth.SVIDTenants {
		ac.SVIDTenants = append(ac.SVIDTenants, agentauth.TenantRule{PathPrefix: t.PathPrefix, Tenant: t.Tenant})
	}
	return agentauth.New(ac, keys, agentauth.WithLogger(logger), agentauth.WithObserver(func(m agentauth.Method, outcome string) {
		method := string(m)
		if method == "" {
			method = "none"
		}
		outcomes.WithLabelValues(method, outcome).Inc()
	})), nil
}
