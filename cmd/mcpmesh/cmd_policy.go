package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/node/policy"
	"github.com/mcpmesh/mcpmesh/registry/apply"
	"github.com/mcpmesh/mcpmesh/registry/card"
	"github.com/mcpmesh/mcpmesh/trust/agentauth"
)

func runPolicy(ctx context.Context, args []string, stdout io.Writer) error {
	return dispatch(ctx, "policy", args, stdout, []subcommand{
		{"show", policyShow}, {"eval", policyEval}, {"explain", policyExplain}, {"schema", policySchema},
	})
}

func policySchema(_ context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("policy schema", "policy schema  (prints the Cedar schema policies are validated against)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	_, err := io.WriteString(stdout, policy.SchemaText)
	return err
}

func policyShow(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("policy show", "policy show [-consistent] [-text]")
	var cf clientFlags
	cf.register(fs)
	consistent := consistentFlag(fs, "write")
	text := fs.Bool("text", false, "print the policy files themselves")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	c, ctx, cancel, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	p, err := c.Policies(ctx, *consistent)
	if err != nil {
		return err
	}
	return cf.print(stdout, p, func(tw *tabwriter.Writer) {
		if len(p.Files) == 0 {
			fmt.Fprintln(tw, "no policies: every request is denied (apply a catalog with *.cedar files: mcpmesh apply -f DIR)")
			return
		}
		fmt.Fprintf(tw, "policy set %s, %d policies in %d files, version %d, updated %s by %s\n\n", p.Digest, len(p.IDs), len(p.Files), p.ModifyIndex, fmtTime(p.UpdatedAt), p.UpdatedBy)
		for _, f := range p.Files {
			if *text {
				fmt.Fprintf(tw, "--- %s\n%s\n", f.Name, strings.TrimRight(f.Text, "\n"))
			}
		}
		if !*text {
			fmt.Fprintln(tw, "POLICY")
			for _, id := range p.IDs {
				fmt.Fprintln(tw, id)
			}
		}
	})
}

// requestFlags are the flags of policy eval and explain: the policy files
// and the request to decide.
type requestFlags struct {
	files                             string
	namespace                         string
	principal, tenant, groups, scopes string
	method, trustDomain               string
	action, server, tool, version     string
	uri, prompt, at, expect, output   string
	arguments                         string
}

func (r *requestFlags) register(fs interface {
	StringVar(p *string, name, value, usage string)
}) {
	fs.StringVar(&r.files, "f", "", "a catalog directory (its *.cedar files and server cards) or one .cedar file (required)")
	fs.StringVar(&r.namespace, "namespace", "", "the BU's namespace (default: the catalog directory's name)")
	fs.StringVar(&r.principal, "principal", "", "the caller's principal id, e.g. apikey:<id> or a SPIFFE ID (default anonymous)")
	fs.StringVar(&r.tenant, "tenant", "", "the caller's tenant")
	fs.StringVar(&r.groups, "groups", "", "the caller's groups, comma-separated")
	fs.StringVar(&r.scopes, "scopes", "", "the caller's scopes, comma-separated")
	fs.StringVar(&r.method, "method", "api-key", "how the caller authenticated: api-key, x509-svid, oidc, jwt-svid, anonymous")
	fs.StringVar(&r.trustDomain, "trust-domain", "", "the caller's trust domain")
	fs.StringVar(&r.action, "action", "call", "list, call, readResource or getPrompt")
	fs.StringVar(&r.server, "server", "", "the server, e.g. corp.hr/directory (its card in -f gives risk tier and classification)")
	fs.StringVar(&r.tool, "tool", "", "the tool to call (its annotations come from the card)")
	fs.StringVar(&r.version, "version", "", "the server version (default: the newest card in -f)")
	fs.StringVar(&r.uri, "uri", "", "the resource URI (readResource)")
	fs.StringVar(&r.prompt, "prompt", "", "the prompt name (getPrompt)")
	fs.StringVar(&r.arguments, "arguments", "", `the call's arguments, a JSON object, e.g. '{"amount_cents": 500}' (policies see them as context.arguments)`)
	fs.StringVar(&r.at, "time", "", "the time of the request, RFC 3339 (default now)")
	fs.StringVar(&r.expect, "expect", "", "allow or deny: exit with status 1 when the decision differs (for CI)")
	fs.StringVar(&r.output, "o", "table", "output format: table or json")
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// load reads the policy files and builds the request, with the server's
// governance and the tool's annotations from the catalog's cards.
func (r *requestFlags) load() (*policy.Set, *policy.Request, error) {
	if r.output != "table" && r.output != "json" {
		return nil, nil, usagef("-o %q: use table or json", r.output)
	}
	if r.expect != "" && r.expect != "allow" && r.expect != "deny" {
		return nil, nil, usagef("-expect %q: use allow or deny", r.expect)
	}
	if r.files == "" {
		return nil, nil, usagef("-f: give the catalog directory or .cedar file to evaluate against")
	}
	action := policy.Action(r.action)
	if !slices.Contains(policy.Actions, action) {
		return nil, nil, usagef("-action %q: use list, call, readResource or getPrompt", r.action)
	}
	now := time.Now()
	if r.at != "" {
		t, err := time.Parse(time.RFC3339, r.at)
		if err != nil {
			return nil, nil, usagef("-time %q: want RFC 3339, e.g. 2026-11-21T09:00:00Z", r.at)
		}
		now = t
	}
	var files []policy.File
	var cards []apply.CardFile
	info, err := os.Stat(r.files)
	if err != nil {
		return nil, nil, fmt.Errorf("-f: %w", err)
	}
	ns := r.namespace
	if info.IsDir() {
		cat, err := apply.Load(r.files)
		if err != nil {
			return nil, nil, err
		}
		if len(cat.Policies) == 0 {
			return nil, nil, fmt.Errorf("%s has no *.cedar files at its top", r.files)
		}
		files = cat.Policies
		cards = cat.Cards
		if ns == "" {
			ns = filepath.Base(filepath.Clean(r.files))
		}
	} else {
		raw, err := os.ReadFile(r.files)
		if err != nil {
			return nil, nil, err
		}
		files = []policy.File{{Name: filepath.Base(r.files), Text: string(raw)}}
		if ns == "" {
			return nil, nil, usagef("-namespace: give the BU's namespace when -f is a single file")
		}
	}
	set, err := policy.Compile(files)
	if err != nil {
		return nil, nil, err
	}
	req := &policy.Request{Action: action, Namespace: ns, URI: r.uri, Prompt: r.prompt, Now: now,
		Principal: agentauth.Principal{ID: r.principal, TrustDomain: r.trustDomain, Tenant: r.tenant,
			Groups: splitList(r.groups), Scopes: splitList(r.scopes), Method: agentauth.Method(r.method)}}
	if req.Principal.ID == "" {
		req.Principal = agentauth.Anonymous
		req.Principal.TrustDomain = r.trustDomain
	}
	if r.arguments != "" {
		if action != policy.ActionCall {
			return nil, nil, usagef("-arguments: only a call has arguments")
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal([]byte(r.arguments), &obj); err != nil || obj == nil {
			return nil, nil, usagef(`-arguments: want a JSON object such as '{"amount_cents": 500}'`)
		}
		req.Arguments = json.RawMessage(r.arguments)
	}
	switch {
	case action == policy.ActionCall && (r.server == "" || r.tool == ""):
		return nil, nil, usagef("-action call needs -server and -tool")
	case action == policy.ActionReadResource && (r.server == "" || r.uri == ""):
		return nil, nil, usagef("-action readResource needs -server and -uri")
	case action == policy.ActionGetPrompt && (r.server == "" || r.prompt == ""):
		return nil, nil, usagef("-action getPrompt needs -server and -prompt")
	}
	if r.server == "" {
		return set, req, nil
	}
	req.Server = policy.Server{Name: r.server}
	cf := newestCard(cards, r.server, r.version)
	if cf == nil {
		if len(cards) > 0 || action == policy.ActionCall {
			return nil, nil, fmt.Errorf("no card of %s in %s: evaluate against the catalog that declares the server", refOr(r.server, r.version), r.files)
		}
		return set, req, nil
	}
	c, err := card.Parse(cf.Raw)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", cf.File, err)
	}
	gov, err := c.Governance()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", cf.File, err)
	}
	req.Server = policy.Server{Name: r.server, RiskTier: gov.RiskTier, DataClassification: gov.DataClassification, Owner: gov.Owner, Team: gov.Team}
	if action != policy.ActionCall {
		return set, req, nil
	}
	tools, err := c.Tools()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", cf.File, err)
	}
	for _, t := range tools {
		if t.Name != r.tool {
			continue
		}
		req.Tool = policy.Tool{Name: t.Name, Version: cf.Version}
		if len(t.Annotations) > 0 {
			var a mcp.ToolAnnotations
			if err := json.Unmarshal(t.Annotations, &a); err != nil {
				return nil, nil, fmt.Errorf("%s: annotations of %s: %w", cf.File, t.Name, err)
			}
			req.Tool.Annotations = &a
		}
		return set, req, nil
	}
	return nil, nil, fmt.Errorf("%s@%s (%s) has no tool %q", r.server, cf.Version, cf.File, r.tool)
}

func refOr(server, version string) string {
	if version == "" {
		return server
	}
	return server + "@" + version
}

// newestCard returns the card of server at version, or its newest card.
func newestCard(cards []apply.CardFile, server, version string) *apply.CardFile {
	var found *apply.CardFile
	for i, cf := range cards { // sorted by name, then version
		if cf.Name == server && (version == "" || cf.Version == version) {
			found = &cards[i]
		}
	}
	return found
}

// check fails when -expect names the other decision.
func (r *requestFlags) check(d policy.Decision) error {
	if r.expect == "" || (r.expect == "allow") == d.Allowed {
		return nil
	}
	return fmt.Errorf("the decision is %s, -expect says %s", strings.ToLower(decisionWord(d)), r.expect)
}

func decisionWord(d policy.Decision) string {
	if d.Allowed {
		return "ALLOW"
	}
	return "DENY"
}

func policyEval(_ context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("policy eval", "policy eval -f DIR|FILE [-principal ID -tenant T -groups G,… -scopes S,…] -action call -server NAME -tool TOOL [-expect allow|deny]  (offline)")
	var r requestFlags
	r.register(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	set, req, err := r.load()
	if err != nil {
		return err
	}
	d := set.Authorize(req)
	if r.output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(d); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "%s: %s\n", decisionWord(d), d.Reason(true))
		if d.Allowed && d.Approval != "" {
			fmt.Fprintf(stdout, "approval %s by %s: %s\n", d.Approval, strings.Join(d.ApprovalPolicies, ", "), approvalMeaning(d.Approval))
		}
		for _, e := range d.Errors {
			fmt.Fprintf(stdout, "error in %s\n", e)
		}
	}
	return r.check(d)
}

func policyExplain(_ context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("policy explain", "policy explain -f DIR|FILE [request flags as for eval]  (every policy: matched, decided)")
	var r requestFlags
	r.register(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	set, req, err := r.load()
	if err != nil {
		return err
	}
	d, traces := set.Explain(req)
	if r.output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"decision": d, "policies": traces}); err != nil {
			return err
		}
		return r.check(d)
	}
	fmt.Fprintf(stdout, "%s: %s\n", decisionWord(d), d.Reason(true))
	if d.Allowed && d.Approval != "" {
		fmt.Fprintf(stdout, "approval %s by %s: %s\n", d.Approval, strings.Join(d.ApprovalPolicies, ", "), approvalMeaning(d.Approval))
	}
	fmt.Fprintln(stdout)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POLICY\tEFFECT\tMATCHED\tDECIDED\tAT")
	for _, t := range traces {
		matched := map[bool]string{true: "yes", false: "no"}[t.Matched]
		if t.Error != "" {
			matched = "error: " + t.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.ID, t.Effect, matched, map[bool]string{true: "yes", false: ""}[t.Decided], t.Position)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return r.check(d)
}

// approvalMeaning says what a call's approval tier makes the node do.
func approvalMeaning(tier string) string {
	if tier == policy.ApprovalConfirm {
		return "the node asks the calling user to confirm the call (an administrator approves it when the agent's client cannot elicit)"
	}
	return "the node holds the call until an administrator approves it"
}
