package config

import (
	"fmt"
	"strings"
)

// AdminOIDCConfig signs administrators in to the admin API with access
// tokens of the BU's OIDC provider, the one agents use (mcp.auth.oidc:
// its issuer, key set and groups claim). An administrator so signed in is
// "oidc:<sub>", the same identity as that person's agent, so mcpmesh can
// refuse a decision on their own held call. Set subjects or groups to
// turn it on.
type AdminOIDCConfig struct {
	// Audience is the admin API's resource URI (RFC 8707), e.g.
	// https://hr-mcp.corp.example/v1; a token's aud must contain it, so
	// an agent's token for /mcp does not open /v1/. Required when on.
	Audience string `yaml:"audience"`
	// Subjects are the token subjects (sub) that are administrators.
	Subjects []string `yaml:"subjects"`
	// Groups are groups (in the provider's groups claim) whose members are
	// administrators.
	Groups []string `yaml:"groups"`
}

// Enabled reports whether administrators may sign in with OIDC tokens.
func (a AdminOIDCConfig) Enabled() bool { return len(a.Subjects) > 0 || len(a.Groups) > 0 }

func (a AdminOIDCConfig) validate(provider OIDCConfig) error {
	if !a.Enabled() {
		if a.Audience != "" {
			return fmt.Errorf("admin.oidc.audience: set, but neither admin.oidc.subjects nor admin.oidc.groups names an administrator")
		}
		return nil
	}
	if provider.Issuer == "" {
		return fmt.Errorf("admin.oidc: needs the BU's provider in mcp.auth.oidc (issuer, jwks_url, audience)")
	}
	if a.Audience == "" {
		return fmt.Errorf("admin.oidc.audience: missing; give the admin API's URL, e.g. https://hr-mcp.corp.example/v1, and have the provider issue admin tokens for it")
	}
	if a.Audience == provider.Audience {
		return fmt.Errorf("admin.oidc.audience: %q is mcp.auth.oidc.audience too; use another resource URI so that an agent's token does not open the admin API", a.Audience)
	}
	if err := oidcURL("admin.oidc.audience", a.Audience); err != nil {
		return err
	}
	for i, s := range a.Subjects {
		if strings.TrimSpace(s) == "" {
			return fmt.Errorf("admin.oidc.subjects[%d]: empty", i)
		}
	}
	for i, g := range a.Groups {
		if strings.TrimSpace(g) == "" {
			return fmt.Errorf("admin.oidc.groups[%d]: empty", i)
		}
	}
	return nil
}
