package config

import (
	"fmt"
	"time"
)

// GovernanceConfig holds the per-call governance controls of the node.
type GovernanceConfig struct {
	// ApprovalHold is how long a call that needs a human's approval is
	// held, waiting for the decision, before the agent is told to retry
	// with the approval id. Default 30s; at most 10m; 0s answers at once with the approval id.
	ApprovalHold time.Duration `yaml:"approval_hold"`
	// ApprovalTTL is how long an approval request stays valid: it must be
	// decided, and the approved call run, before then. Default 15m; at
	// least the hold.
	ApprovalTTL time.Duration `yaml:"approval_ttl"`
	// ApprovalMaxHeld bounds how many calls this node holds at once
	// waiting for approval (each holds an HTTP request open). A call
	// beyond it is not held: its approval is still requested and it is
	// answered at once with the approval id to retry with. Zero means the
	// default, 256; at most 100000.
	ApprovalMaxHeld int `yaml:"approval_max_held"`
	// UsageFlush is how often the node commits the usage it counted
	// (calls and cost per tenant, for quotas, budgets and chargeback)
	// through Raft. Other replicas see this node's calls that much later,
	// so a tenant may overshoot a limit by about one interval of traffic.
	// Zero means the default, 1s; at least 100ms, at most 1m.
	UsageFlush time.Duration `yaml:"usage_flush"`
}

// Default approval settings.
const (
	DefaultApprovalHold = 30 * time.Second
	DefaultApprovalTTL  = 15 * time.Minute
	// DefaultApprovalMaxHeld is the default of ApprovalMaxHeld.
	DefaultApprovalMaxHeld = 256
)

// validate checks the governance section. A hold of 0s answers at once
// with the approval id.
func (g *GovernanceConfig) validate() error {
	switch {
	case g.ApprovalHold < 0 || g.ApprovalHold > 10*time.Minute:
		return fmt.Errorf("governance.approval_hold: %s; want a duration from 0s to 10m, e.g. 30s (an HTTP request is held that long)", g.ApprovalHold)
	case g.ApprovalTTL < time.Second:
		return fmt.Errorf("governance.approval_ttl: %s; want at least 1s, e.g. 15m", g.ApprovalTTL)
	case g.ApprovalTTL < g.ApprovalHold:
		return fmt.Errorf("governance.approval_ttl: %s is shorter than governance.approval_hold %s; an approval must outlive the hold", g.ApprovalTTL, g.ApprovalHold)
	case g.ApprovalMaxHeld < 0 || g.ApprovalMaxHeld > 100000:
		return fmt.Errorf("governance.approval_max_held: %d; want 0 (the default, %d) to 100000 calls held at once by one node", g.ApprovalMaxHeld, DefaultApprovalMaxHeld)
	case g.UsageFlush != 0 && (g.UsageFlush < 100*time.Millisecond || g.UsageFlush > time.Minute):
		return fmt.Errorf("governance.usage_flush: %s is out of range; use between 100ms and 1m (default 1s)", g.UsageFlush)
	}
	return nil
}
