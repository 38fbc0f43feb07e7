package node

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpmesh/mcpmesh/node/config"
	"github.com/mcpmesh/mcpmesh/trust/agentauth"
)

// newAgentAuth builds the front door's authenticator from mcp.auth and
// counts its outcomes in mcpmesh_agent_auth_total{method,outcome};
// refusals is told of every refused request before it is answered.
// jwtBundles holds the trust domain's JWT authorities, for JWT-SVIDs.
func newAgentAuth(cfg config.Config, td spiffeid.TrustDomain, keys agentauth.KeyStore, jwtBundles jwtbundle.Source, logger *slog.Logger, reg prometheus.Registerer,
	refusals func(*http.Request, *agentauth.Error)) (*agentauth.Authenticator, error) {
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
	for _, m := range cfg.MCP.Auth.EffectiveMethods() {
		ac.Methods = append(ac.Methods, agentauth.Method(m))
	}
	if o := cfg.MCP.Auth.OIDC; o.Issuer != "" {
		ac.OIDC = &agentauth.OIDCConfig{Issuer: o.Issuer, JWKSURL: o.JWKSURL, Audience: o.Audience,
			TenantClaim: o.TenantClaim, GroupsClaim: o.GroupsClaim, RequiredScopes: o.RequiredScopes}
		ac.ResourceMetadataURL = resourceMetadataURL(o.Audience)
	}
	ac.JWTSVID = &agentauth.JWTSVIDConfig{Audience: cfg.MCP.Auth.JWTSVIDAudience(td.Name()), Bundles: jwtBundles}
	for _, t := range cfg.MCP.Auth.SVIDTenants {
		ac.SVIDTenants = append(ac.SVIDTenants, agentauth.TenantRule{PathPrefix: t.PathPrefix, Tenant: t.Tenant})
	}
	return agentauth.New(ac, keys, agentauth.WithLogger(logger), agentauth.WithRefusals(refusals), agentauth.WithObserver(func(m agentauth.Method, outcome string) {
		method := string(m)
		if method == "" {
			method = "none"
		}
		outcomes.WithLabelValues(method, outcome).Inc()
	})), nil
}

// resourceMetadataPath is where RFC 9728 puts the metadata of a resource
// on its host: /.well-known/oauth-protected-resource, then its path.
func resourceMetadataPath(resource *url.URL) string {
	return "/.well-known/oauth-protected-resource" + strings.TrimSuffix(resource.EscapedPath(), "/")
}

// resourceMetadataURL is the full URL of a resource's metadata.
func resourceMetadataURL(resource string) string {
	u, err := url.Parse(resource)
	if err != nil {
		return ""
	}
	return u.Scheme + "://" + u.Host + resourceMetadataPath(u)
}

// prmHandler serves the Protected Resource Metadata (RFC 9728) of the
// node's MCP endpoint, which OAuth clients read to find the provider.
func prmHandler(o config.OIDCConfig) (pattern string, h http.Handler) {
	u, _ := url.Parse(o.Audience) // validated by config
	meta := &oauthex.ProtectedResourceMetadata{
		Resource:               o.Audience,
		AuthorizationServers:   []string{o.Issuer},
		ScopesSupported:        o.RequiredScopes,
		BearerMethodsSupported: []string{"header"},
		ResourceName:           "mcpmesh",
	}
	return "GET " + resourceMetadataPath(u), auth.ProtectedResourceMetadataHandler(meta)
}
