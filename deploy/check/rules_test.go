package check

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/promqltest"
)

const rulesFile = "../prometheus/mcpmesh-rules.yaml"

// alertCase is a sample on which an alert must fire and one on which it
// must not.
type alertCase struct {
	// fire and quiet are promqltest load bodies (series and their values).
	fire, quiet string
	// labels must be among the labels of what fires.
	labels map[string]string
	// step is the load interval (default 1m); at is the evaluation time
	// (default 40m).
	step, at time.Duration
}

// alertCases holds one case per alert of the rules file; an alert without
// one fails TestAlertsFireOnTrouble.
var alertCases = map[string]alertCase{
	"McpmeshNoRegistryLeader": {
		fire:   `mcpmesh_registry_is_leader{namespace="hr",instance="n1"} 0x40` + "\n" + `mcpmesh_registry_is_leader{namespace="hr",instance="n2"} 0x40`,
		quiet:  `mcpmesh_registry_is_leader{namespace="hr",instance="n1"} 1x40` + "\n" + `mcpmesh_registry_is_leader{namespace="hr",instance="n2"} 0x40`,
		labels: map[string]string{"namespace": "hr"},
	},
	"McpmeshNodeNotReady": {
		fire:   `mcpmesh_node_ready{namespace="hr",instance="n1"} 0x40`,
		quiet:  `mcpmesh_node_ready{namespace="hr",instance="n1"} 1x40`,
		labels: map[string]string{"instance": "n1"},
	},
	"McpmeshNodeDown": {
		fire:   `up{job="mcpmesh",instance="n1"} 0x40`,
		quiet:  `up{job="mcpmesh",instance="n1"} 1x40`,
		labels: map[string]string{"instance": "n1"},
	},
	"McpmeshReplicaLagging": {
		fire:   `mcpmesh_registry_applied_index{namespace="hr",instance="n1"} 5000x40` + "\n" + `mcpmesh_registry_applied_index{namespace="hr",instance="n2"} 100x40`,
		quiet:  `mcpmesh_registry_applied_index{namespace="hr",instance="n1"} 5000x40` + "\n" + `mcpmesh_registry_applied_index{namespace="hr",instance="n2"} 4990x40`,
		labels: map[string]string{"instance": "n2"},
	},
	"McpmeshQuarantinedVersions": {
		fire:   `mcpmesh_registry_server_versions{namespace="hr",instance="n1",state="quarantined"} 1x40`,
		quiet:  `mcpmesh_registry_server_versions{namespace="hr",instance="n1",state="quarantined"} 0x40`,
		labels: map[string]string{"namespace": "hr"},
	},
	"McpmeshAuditFailing": {
		fire:   `mcpmesh_audit_failures_total{instance="n1"} 0+1x40`,
		quiet:  `mcpmesh_audit_failures_total{instance="n1"} 3x40`,
		labels: map[string]string{"instance": "n1"},
	},
	"McpmeshAuditCommitSlow": {
		fire: `mcpmesh_audit_commit_seconds_bucket{instance="n1",le="0.1"} 0+1x40` + "\n" +
			`mcpmesh_audit_commit_seconds_bucket{instance="n1",le="1"} 0+10x40` + "\n" +
			`mcpmesh_audit_commit_seconds_bucket{instance="n1",le="+Inf"} 0+10x40`,
		quiet: `mcpmesh_audit_commit_seconds_bucket{instance="n1",le="0.1"} 0+10x40` + "\n" +
			`mcpmesh_audit_commit_seconds_bucket{instance="n1",le="1"} 0+10x40` + "\n" +
			`mcpmesh_audit_commit_seconds_bucket{instance="n1",le="+Inf"} 0+10x40`,
		labels: map[string]string{"instance": "n1"},
	},
	"McpmeshToolCallErrors": {
		fire: `mcpmesh_gateway_tool_calls_total{namespace="hr",tool="ledger.report",outcome="error"} 0+10x40` + "\n" +
			`mcpmesh_gateway_tool_calls_total{namespace="hr",tool="ledger.report",outcome="ok"} 0+10x40`,
		quiet: `mcpmesh_gateway_tool_calls_total{namespace="hr",tool="ledger.report",outcome="error"} 0+0x40` + "\n" +
			`mcpmesh_gateway_tool_calls_total{namespace="hr",tool="ledger.report",outcome="ok"} 0+10x40`,
		labels: map[string]string{"namespace": "hr"},
	},
	"McpmeshToolCallsSlow": {
		fire: `mcpmesh_gateway_tool_call_duration_seconds_bucket{namespace="hr",tool="t",le="5"} 0+1x40` + "\n" +
			`mcpmesh_gateway_tool_call_duration_seconds_bucket{namespace="hr",tool="t",le="10"} 0+10x40` + "\n" +
			`mcpmesh_gateway_tool_call_duration_seconds_bucket{namespace="hr",tool="t",le="+Inf"} 0+10x40`,
		quiet: `mcpmesh_gateway_tool_call_duration_seconds_bucket{namespace="hr",tool="t",le="5"} 0+10x40` + "\n" +
			`mcpmesh_gateway_tool_call_duration_seconds_bucket{namespace="hr",tool="t",le="10"} 0+10x40` + "\n" +
			`mcpmesh_gateway_tool_call_duration_seconds_bucket{namespace="hr",tool="t",le="+Inf"} 0+10x40`,
		labels: map[string]string{"namespace": "hr"},
	},
	"McpmeshUpstreamCircuitOpen": {
		fire:   `mcpmesh_upstream_circuit_open{namespace="hr",server="ledger@1.0.0",instance="n1"} 1x40`,
		quiet:  `mcpmesh_upstream_circuit_open{namespace="hr",server="ledger@1.0.0",instance="n1"} 0x40`,
		labels: map[string]string{"server": "ledger@1.0.0"},
	},
	"McpmeshAgentAuthFailures": {
		fire:   `mcpmesh_agent_auth_total{namespace="hr",instance="n1",method="apikey",outcome="unknown_key"} 0+600x40`,
		quiet:  `mcpmesh_agent_auth_total{namespace="hr",instance="n1",method="apikey",outcome="ok"} 0+600x40`,
		labels: map[string]string{"instance": "n1"},
	},
	"McpmeshQuotaNearlyUsed": {
		fire:   `mcpmesh_quota_used_ratio{tenant="payroll",kind="budget"} 0.85x40`,
		quiet:  `mcpmesh_quota_used_ratio{tenant="payroll",kind="budget"} 0.5x40` + "\n" + `mcpmesh_quota_used_ratio{tenant="legal",kind="calls"} 1x40`,
		labels: map[string]string{"tenant": "payroll", "kind": "budget"},
	},
	"McpmeshQuotaExhausted": {
		fire:   `mcpmesh_quota_used_ratio{tenant="payroll",kind="calls"} 1x40`,
		quiet:  `mcpmesh_quota_used_ratio{tenant="payroll",kind="calls"} 0.99x40`,
		labels: map[string]string{"tenant": "payroll", "kind": "calls"},
	},
	"McpmeshRateLimited": {
		fire:   `mcpmesh_rate_limited_total{namespace="hr",tenant="payroll",tool="t",scope="tenant"} 0+600x40`,
		quiet:  `mcpmesh_rate_limited_total{namespace="hr",tenant="payroll",tool="t",scope="tenant"} 0+6x40`,
		labels: map[string]string{"tenant": "payroll"},
	},
	"McpmeshApprovalsWaiting": {
		fire:   `mcpmesh_approvals_pending{namespace="finance",instance="n1"} 20x40` + "\n" + `mcpmesh_approvals_pending{namespace="finance",instance="n2"} 20x40`,
		quiet:  `mcpmesh_approvals_pending{namespace="finance",instance="n1"} 8x40` + "\n" + `mcpmesh_approvals_pending{namespace="finance",instance="n2"} 8x40`,
		labels: map[string]string{"namespace": "finance"},
	},
	"McpmeshKillSwitchInForce": {
		fire:   `mcpmesh_kill_switches{kind="tool",instance="n1"} 1x200`,
		quiet:  `mcpmesh_kill_switches{kind="tool",instance="n1"} 0x120 1x80`,
		labels: map[string]string{"kind": "tool"},
		step:   10 * time.Minute, at: 30 * time.Hour,
	},
	"McpmeshSigningKeyRotationFailing": {
		fire:   `mcpmesh_tokens_rotation_failures_total{instance="n1"} 0+1x40`,
		quiet:  `mcpmesh_tokens_rotation_failures_total{instance="n1"} 0+0.05x40`,
		labels: map[string]string{"instance": "n1"},
	},
	"McpmeshFederationManifestExpiring": {
		// Evaluated at 40m (2400 s): 3 days ahead fires, 30 days does not.
		fire:   `mcpmesh_federation_manifest_expiry_timestamp_seconds{namespace="hr",instance="n1"} 261600x40`,
		quiet:  `mcpmesh_federation_manifest_expiry_timestamp_seconds{namespace="hr",instance="n1"} 2594400x40`,
		labels: map[string]string{"namespace": "hr"},
	},
	"McpmeshFederationManifestExpired": {
		fire:   `mcpmesh_federation_manifest_expiry_timestamp_seconds{namespace="hr",instance="n1"} 1000x40`,
		quiet:  `mcpmesh_federation_manifest_expiry_timestamp_seconds{namespace="hr",instance="n1"} 261600x40`,
		labels: map[string]string{"namespace": "hr"},
	},
	"McpmeshNoSigningKey": {
		fire:   `mcpmesh_tokens_minted_total{instance="n1",audience="ledger",outcome="no_key"} 0+1x40`,
		quiet:  `mcpmesh_tokens_minted_total{instance="n1",audience="ledger",outcome="ok"} 0+100x40`,
		labels: map[string]string{"instance": "n1"},
	},
}

// loadRules parses the rules file as Prometheus does when it loads it.
func loadRules(t *testing.T) *rulefmt.RuleGroups {
	t.Helper()
	groups, errs := rulefmt.ParseFile(rulesFile, false, model.UTF8Validation)
	for _, err := range errs {
		t.Errorf("%s: %v", rulesFile, err)
	}
	if groups == nil || len(errs) > 0 {
		t.FailNow()
	}
	return groups
}

func TestRulesParse(t *testing.T) {
	groups := loadRules(t)
	alerts := 0
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts++
			if r.Labels["severity"] == "" {
				t.Errorf("alert %s has no severity label", r.Alert)
			}
			if r.Annotations["summary"] == "" {
				t.Errorf("alert %s has no summary annotation", r.Alert)
			}
		}
	}
	if alerts == 0 {
		t.Fatalf("%s has no alerts", rulesFile)
	}
}

func TestAlertsFireOnTrouble(t *testing.T) {
	groups := loadRules(t)
	engine := promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery)
	seen := map[string]bool{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			seen[r.Alert] = true
			c, ok := alertCases[r.Alert]
			if !ok {
				t.Errorf("alert %s has no case in alertCases: add a sample it fires on and one it does not", r.Alert)
				continue
			}
			t.Run(r.Alert, func(t *testing.T) {
				forDur := time.Duration(r.For)
				fired := evalWindow(t, engine, c, c.fire, r.Expr, forDur)
				if len(fired) == 0 {
					t.Fatalf("did not fire on its trouble sample:\n%s", c.fire)
				}
				for _, s := range fired {
					for k, v := range c.labels {
						if got := s.Metric.Get(k); got != v {
							t.Errorf("fired with %s=%q, want %q (series %s)", k, got, v, s.Metric)
						}
					}
				}
				if quiet := evalWindow(t, engine, c, c.quiet, r.Expr, forDur); len(quiet) != 0 {
					t.Errorf("fired on its healthy sample: %v", quiet)
				}
			})
		}
	}
	for name := range alertCases {
		if !seen[name] {
			t.Errorf("alertCases has %s, which the rules file does not define", name)
		}
	}
}

// evalWindow loads series and evaluates expr at c.at and at each step back
// over the alert's for: window, as Prometheus would before it fires. It
// returns what the expression gave at c.at, or nothing when any evaluation
// of the window gave nothing.
func evalWindow(t *testing.T, engine *promql.Engine, c alertCase, series, expr string, forDur time.Duration) promql.Vector {
	t.Helper()
	step, at := c.step, c.at
	if step == 0 {
		step = time.Minute
	}
	if at == 0 {
		at = 40 * time.Minute
	}
	storage := promqltest.LoadedStorage(t, fmt.Sprintf("load %s\n  %s\n", model.Duration(step), strings.ReplaceAll(series, "\n", "\n  ")))
	var last promql.Vector
	for ts := at - forDur; ts <= at; ts += step {
		q, err := engine.NewInstantQuery(context.Background(), storage, nil, expr, time.Unix(0, 0).Add(ts))
		if err != nil {
			t.Fatalf("query %q: %v", expr, err)
		}
		res := q.Exec(context.Background())
		if res.Err != nil {
			t.Fatalf("evaluate %q at %s: %v", expr, ts, res.Err)
		}
		v, err := res.Vector()
		if err != nil {
			t.Fatalf("evaluate %q: not a vector: %v", expr, err)
		}
		q.Close()
		if len(v) == 0 {
			return nil
		}
		last = v
	}
	return last
}
