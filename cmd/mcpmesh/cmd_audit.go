package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mcpmesh/mcpmesh/node/audit"
	"github.com/mcpmesh/mcpmesh/registry/api"
)

func runAudit(ctx context.Context, args []string, stdout io.Writer) error {
	return dispatch(ctx, "audit", args, stdout, []subcommand{
		{"verify", auditVerify}, {"query", auditQuery}, {"export", auditExport},
	})
}

// filterFlags are the record filters of audit query and export.
type filterFlags struct {
	principal, tenant, tool, outcome, kind, since, until string
	requestID                                            *string
}

func (f *filterFlags) register(fs interface {
	StringVar(p *string, name, value, usage string)
	Func(name, usage string, fn func(string) error)
}) {
	fs.StringVar(&f.principal, "principal", "", "only records of this principal (apikey:<id>, oidc:<sub>, a SPIFFE ID, token:bootstrap)")
	fs.StringVar(&f.tenant, "tenant", "", "only records of this tenant")
	fs.StringVar(&f.tool, "tool", "", "only records of this tool: <server>/<tool>, the name the agent called, or a server")
	fs.StringVar(&f.outcome, "outcome", "", "only this outcome: "+audit.OutcomeNames())
	fs.StringVar(&f.kind, "kind", "", "only this kind of record: call, auth or admin")
	fs.Func("request-id", "only the records of this request id: a tools/call result's _meta \"io.mcpmesh/requestId\", or the id an error about a call that may have run names (a call forwarded to another BU is recorded there under the same id)", func(s string) error {
		if err := api.CheckRequestID(s); err != nil {
			return err
		}
		f.requestID = &s
		return nil
	})
	fs.StringVar(&f.since, "since", "", "only records at or after: RFC 3339, a date (YYYY-MM-DD), or a duration back from now (24h)")
	fs.StringVar(&f.until, "until", "", "only records before: RFC 3339, a date, or a duration back from now")
}

// query builds the API filter, resolving relative times against now.
func (f *filterFlags) query(now time.Time) (api.AuditQuery, error) {
	q := api.AuditQuery{Principal: f.principal, Tenant: f.tenant, Tool: f.tool, Outcome: f.outcome, Kind: f.kind}
	if f.requestID != nil {
		q.RequestID = *f.requestID
	}
	for _, p := range []struct {
		flag, value string
		to          *time.Time
	}{{"-since", f.since, &q.Since}, {"-until", f.until, &q.Until}} {
		if p.value == "" {
			continue
		}
		if d, err := time.ParseDuration(p.value); err == nil && d > 0 {
			*p.to = now.Add(-d)
			continue
		}
		t, err := api.ParseDate(p.value)
		if err != nil {
			return q, usagef("%s: %v, or a duration such as 24h", p.flag, err)
		}
		*p.to = t
	}
	return q, nil
}

func auditQuery(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("audit query", "audit query [-all] [-request-id ID] [-principal P] [-tenant T] [-tool T] [-outcome O] [-kind K] [-since S] [-until U] [-limit N]  (the node's newest matching records; with -all, the BU's)")
	var cf clientFlags
	cf.register(fs)
	var ff filterFlags
	ff.register(fs)
	all := fs.Bool("all", false, allUsage)
	limit := fs.Int("limit", audit.DefaultLimit, fmt.Sprintf("at most this many records, the newest (up to %d; with -all, across the replicas)", audit.MaxLimit))
	if _, err := parse(fs, args); err != nil {
		return err
	}
	q, err := ff.query(time.Now())
	if err != nil {
		return err
	}
	q.Limit = *limit
	c, ctx, cancel, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if *all {
		return auditQueryAll(ctx, c, q, &cf, stdout)
	}
	res, err := c.AuditQuery(ctx, q)
	if err != nil {
		return err
	}
	return cf.print(stdout, res, func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "SEQ\tTIME\tKIND\tPRINCIPAL\tTENANT\tWHAT\tOUTCOME\tCODE\tMS\tREQUEST")
		for _, r := range res.Records {
			fmt.Fprintln(tw, recordRow(r))
		}
		if len(res.Records) == 0 {
			fmt.Fprintf(tw, "no record of node %s matches\n", res.Node)
		}
	})
}

// recordRow is a record's row of the audit query table, from SEQ on. The
// request id comes last, whole, so that it can be copied into
// -request-id.
func recordRow(r audit.Record) string {
	what := r.Tool
	if r.Version != "" {
		what += "@" + r.Version
	}
	if r.Kind != audit.KindCall {
		what = strings.TrimSpace(r.Action + " " + r.Target)
	}
	return fmt.Sprintf("%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%.1f\t%s", r.Seq, r.Time.UTC().Format(time.RFC3339), r.Kind, orDash(r.Principal), orDash(r.Tenant), what, r.Outcome, r.ErrorCode, r.DurationMs, orDash(r.RequestID))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func auditExport(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("audit export", "audit export [-all] [-since S] [-until U] [filters of audit query] [-out FILE]  (JSON lines for a SIEM, oldest first)")
	var cf clientFlags
	cf.register(fs)
	var ff filterFlags
	ff.register(fs)
	all := fs.Bool("all", false, allUsage+"; a partial export ends with a line {\"partial\":true,\"missing\":[…]}")
	out := fs.String("out", "", "write to FILE instead of standard output")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	q, err := ff.query(time.Now())
	if err != nil {
		return err
	}
	c, ctx, cancel, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	w := stdout
	if *out != "" {
		f, err := os.OpenFile(*out, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return fmt.Errorf("-out: %w", err)
		}
		defer f.Close()
		w = f
	}
	var missing []api.MissingNode
	if *all {
		missing, err = c.AuditExportAll(ctx, q, w)
	} else {
		err = c.AuditExport(ctx, q, w)
	}
	if err != nil {
		return err
	}
	if f, ok := w.(*os.File); ok && *out != "" {
		if err := f.Close(); err != nil {
			return err
		}
	}
	return partialError(missing)
}

func auditVerify(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("audit verify", "audit verify [-dir STORE [-node ID]]  (the node's chain against its Raft checkpoints; with -dir, a store directory offline, against node ID's checkpoints when -node is given)")
	var cf clientFlags
	cf.register(fs)
	dir := fs.String("dir", "", "verify this audit store directory (a copy of a node's <data dir>/audit, or a stopped node's) instead of asking a node")
	node := fs.String("node", "", "with -dir: the node whose store it is; its checkpoints are fetched from -addr")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if cf.output != "table" && cf.output != "json" {
		return usagef("-o %q: use table or json", cf.output)
	}
	var res api.AuditVerifyResponse
	var note string
	switch {
	case *dir == "" && *node != "":
		return usagef("-node goes with -dir; without -dir the node at -addr verifies its own log")
	case *dir == "":
		c, cctx, cancel, err := cf.connect(ctx)
		if err != nil {
			return err
		}
		defer cancel()
		if res, err = c.AuditVerify(cctx); err != nil {
			return err
		}
	default:
		var cps []audit.Checkpoint
		if *node != "" {
			c, cctx, cancel, err := cf.connect(ctx)
			if err != nil {
				return err
			}
			defer cancel()
			heads, err := c.AuditCheckpoints(cctx, *node)
			if err != nil {
				return err
			}
			for _, h := range heads {
				cps = append(cps, audit.Checkpoint{Seq: h.Seq, Head: h.Head, At: h.At})
			}
		} else {
			note = "chain only: pass -node ID (and -addr) to check it against the node's checkpoints in Raft, which detect a rewritten history"
		}
		rep, err := audit.VerifyDir(ctx, *dir, cps)
		if err != nil {
			return err
		}
		res = api.AuditVerifyResponse{Node: *node, Report: rep}
	}
	if err := cf.print(stdout, res, func(tw *tabwriter.Writer) { printReport(tw, res, *dir, note) }); err != nil {
		return err
	}
	if !res.OK {
		where := "the audit log of node " + res.Node
		if *dir != "" {
			where = "the audit store in " + *dir
		}
		return fmt.Errorf("%s failed verification: %d problems (listed above); it was modified, records were removed or reordered, or its history was rewritten", where, len(res.Problems)+res.Omitted)
	}
	return nil
}

func printReport(tw *tabwriter.Writer, res api.AuditVerifyResponse, dir, note string) {
	what := "node " + res.Node
	if dir != "" {
		what = dir
	}
	if res.OK {
		fmt.Fprintf(tw, "OK: %s: %d records", what, res.Records)
		if res.Records > 0 {
			fmt.Fprintf(tw, " (%d to %d)", res.First, res.Last)
		}
		if res.Anchor > 0 {
			fmt.Fprintf(tw, ", verified from the retention anchor %d", res.Anchor)
		}
		fmt.Fprintf(tw, ", head %s, %d checkpoints match", orDash(res.Head), res.Checkpoints)
		if res.CheckpointsPruned > 0 {
			fmt.Fprintf(tw, " (%d older ones name removed records)", res.CheckpointsPruned)
		}
		fmt.Fprintln(tw)
	} else {
		fmt.Fprintf(tw, "FAILED: %s: %d records read, %d checkpoints checked\n\n", what, res.Records, res.Checkpoints)
		fmt.Fprintln(tw, "RECORD\tPROBLEM\tDETAIL")
		for _, p := range res.Problems {
			fmt.Fprintf(tw, "%d\t%s\t%s\n", p.Seq, p.Kind, p.Message)
		}
		if res.Omitted > 0 {
			fmt.Fprintf(tw, "…\t\t%d more problems\n", res.Omitted)
		}
	}
	if note != "" {
		fmt.Fprintf(tw, "note: %s\n", note)
	}
}
