package config

import (
	"fmt"
	"time"
)

// GovernanceConfig controls the BU-wide controls on tool calls.
type GovernanceConfig struct {
	// UsageFlush is how often the node commits the usage it counted
	// (calls and cost per tenant, for quotas, budgets and chargeback)
	// through Raft. Other replicas see this node's calls that much later,
	// so a tenant may overshoot a limit by about one interval of traffic.
	// Zero means the default, 1s; at least 100ms, at most 1m.
	UsageFlush time.Duration `yaml:"usage_flush"`
}

func (g *GovernanceConfig) validate() error {
	if g.UsageFlush != 0 && (g.UsageFlush < 100*time.Millisecond || g.UsageFlush > time.Minute) {
		return fmt.Errorf("governance.usage_flush: %s is out of range; use between 100ms and 1m (default 1s)", g.UsageFlush)
	}
	return nil
}
