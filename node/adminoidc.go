package node

import (
	"github.com/mcpmesh/mcpmesh/node/adminauth"
	"github.com/mcpmesh/mcpmesh/node/config"
	"github.com/mcpmesh/mcpmesh/trust/agentauth"
)

// adminOIDC is the admin API's sign-in with the BU's OIDC provider
// (admin.oidc, with mcp.auth.oidc's issuer, key set and groups claim), or
// nil when admin.oidc names no administrator.
func adminOIDC(cfg config.Config) *adminauth.OIDCAdmins {
	a, o := cfg.Admin.OIDC, cfg.MCP.Auth.OIDC
	if !a.Enabled() {
		return nil
	}
	v := agentauth.NewOIDCVerifier(agentauth.OIDCConfig{Issuer: o.Issuer, JWKSURL: o.JWKSURL, Audience: a.Audience,
		TenantClaim: o.TenantClaim, GroupsClaim: o.GroupsClaim})
	return &adminauth.OIDCAdmins{Verifier: v, Subjects: a.Subjects, Groups: a.Groups}
}
