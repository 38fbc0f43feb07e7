package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/registry/state"
)

func runUsage(ctx context.Context, args []string, stdout io.Writer) error {
	return dispatch(ctx, "usage", args, stdout, []subcommand{
		{"report", usageReport}, {"quotas", usageQuotas},
	})
}

const usageReportHelp = `usage report [-month YYYY-MM] [-tenant T] [-o table|json|csv]

Calls and cost of a UTC month per tenant, per tool and per calling BU, with
totals: the chargeback. It reads the usage replicated through Raft; each
node's calls reach it within about one governance.usage_flush (1s).
-o csv writes one line per group: level (row, tenant, tool, caller, total),
month, tenant, tool, caller_bu, currency, calls, cost.`

func usageReport(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("usage report", usageReportHelp)
	var cf clientFlags
	cf.register(fs)
	month := fs.String("month", time.Now().UTC().Format("2006-01"), "the UTC month, YYYY-MM (default: this month)")
	tenant := fs.String("tenant", "", "only this tenant")
	consistent := consistentFlag(fs, "flush")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("usage report takes no arguments; use -month and -tenant")
	}
	if _, err := state.ParseMonth(*month); err != nil {
		return usagef("-month %q: want YYYY-MM, e.g. 2026-11", *month)
	}
	if *tenant != "" {
		if err := state.ValidateScopedTenant(*tenant); err != nil {
			return usagef("-tenant: %v", err)
		}
	}
	asCSV := cf.output == "csv"
	if asCSV {
		cf.output = "table"
	} else if cf.output != "table" && cf.output != "json" {
		return usagef("-o %q: use table, json or csv", cf.output)
	}
	c, ctx, cancel, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	rep, err := c.Usage(ctx, *month, *tenant, *consistent)
	if err != nil {
		return err
	}
	if asCSV {
		return writeUsageCSV(stdout, rep)
	}
	return cf.print(stdout, rep, func(tw *tabwriter.Writer) {
		if len(rep.Rows) == 0 {
			fmt.Fprintf(tw, "no calls charged in %s\n", rep.Month)
			return
		}
		section := func(title, col string, lines []api.UsageLine, key func(api.UsageLine) string) {
			fmt.Fprintf(tw, "%s\t\t\t\n%s\tCALLS\tCOST\tCURRENCY\n", title, col)
			for _, l := range lines {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", key(l), l.Calls, cost(l.Cost), l.Currency)
			}
			fmt.Fprintln(tw, "\t\t\t")
		}
		section("usage in "+rep.Month+" per tenant", "TENANT", rep.Tenants, func(l api.UsageLine) string { return orNone(l.Tenant) })
		section("per tool", "TOOL", rep.Tools, func(l api.UsageLine) string { return l.Tool })
		section("per calling BU", "CALLER BU", rep.Callers, func(l api.UsageLine) string { return l.CallerBU })
		section("total", "", rep.Totals, func(api.UsageLine) string { return "total" })
	})
}

// orNone names calls without a tenant.
func orNone(tenant string) string {
	if tenant == "" {
		return "(no tenant)"
	}
	return tenant
}

func cost(c float64) string { return strconv.FormatFloat(c, 'f', -1, 64) }

// writeUsageCSV writes the report as CSV: the rows, then the sums.
func writeUsageCSV(w io.Writer, rep api.UsageReport) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"level", "month", "tenant", "tool", "caller_bu", "currency", "calls", "cost"})
	for _, part := range []struct {
		level string
		lines []api.UsageLine
	}{{"row", rep.Rows}, {"tenant", rep.Tenants}, {"tool", rep.Tools}, {"caller", rep.Callers}, {"total", rep.Totals}} {
		for _, l := range part.lines {
			cw.Write([]string{part.level, rep.Month, l.Tenant, l.Tool, l.CallerBU, l.Currency, strconv.FormatInt(l.Calls, 10), cost(l.Cost)})
		}
	}
	cw.Flush()
	return cw.Error()
}

func usageQuotas(ctx context.Context, args []string, stdout io.Writer) error {
	return showRead(ctx, "usage quotas", "usage quotas [-consistent]   (the tenants' monthly limits; set them in a catalog's quotas.yaml with mcpmesh apply)", args, stdout, (*api.Client).Quotas, func(tw *tabwriter.Writer, q state.Quotas) {
		if len(q.Quotas) == 0 {
			fmt.Fprintln(tw, "no quotas: every tenant is unlimited")
			return
		}
		fmt.Fprintln(tw, "TENANT\tCALLS/MONTH\tBUDGET/MONTH\tWARN AT")
		for _, t := range q.Quotas {
			calls, budget := "-", "-"
			if t.Calls > 0 {
				calls = strconv.FormatInt(t.Calls, 10)
			}
			if t.Budget > 0 {
				budget = cost(t.Budget) + " " + t.Currency
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f%%\n", t.Tenant, calls, budget, 100*t.Warn())
		}
	})
}
