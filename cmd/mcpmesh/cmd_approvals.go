package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/mcpmesh/mcpmesh/registry/state"
)

func runApprovals(ctx context.Context, args []string, stdout io.Writer) error {
	return dispatch(ctx, "approvals", args, stdout, []subcommand{
		{"list", approvalsList}, {"approve", approvalsApprove}, {"deny", approvalsDeny},
	})
}

func approvalsList(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("approvals list", "approvals list [-state pending|approved|denied|consumed|expired] [-consistent]  (calls held for approval, oldest first)")
	var cf clientFlags
	cf.register(fs)
	st := fs.String("state", "", "only approvals in this state: pending, approved, denied, consumed or expired")
	consistent := consistentFlag(fs, "write")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("approvals list takes no arguments")
	}
	if *st != "" && !slices.Contains(state.ApprovalStates, state.ApprovalState(*st)) {
		return usagef("-state %q: want pending, approved, denied, consumed or expired", *st)
	}
	c, ctx, cancel, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	as, err := c.Approvals(ctx, state.ApprovalState(*st), *consistent)
	if err != nil {
		return err
	}
	return cf.print(stdout, as, func(tw *tabwriter.Writer) {
		if len(as) == 0 {
			fmt.Fprintln(tw, "no approval matches")
			return
		}
		fmt.Fprintln(tw, "ID\tSTATE\tCALLER\tTENANT\tTOOL\tPOLICIES\tCREATED\tEXPIRES\tDECIDED BY\tREASON")
		for _, a := range as {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s/%s@%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, a.State, a.Caller, orDash(a.Tenant), a.Server, a.Tool, a.Version,
				orDash(fmt.Sprint(a.Policies)), fmtTime(a.CreatedAt), fmtTime(a.ExpiresAt), orDash(a.DecidedBy), orDash(a.Reason))
		}
	})
}

func approvalsApprove(ctx context.Context, args []string, stdout io.Writer) error {
	return approvalsDecide(ctx, "approve", args, stdout)
}

func approvalsDeny(ctx context.Context, args []string, stdout io.Writer) error {
	return approvalsDecide(ctx, "deny", args, stdout)
}

func approvalsDecide(ctx context.Context, verb string, args []string, stdout io.Writer) error {
	usage := "approvals approve ID [-reason TEXT]  (the held call runs once; you cannot approve your own call)"
	reasonHelp := "why, in one line, for the audit (optional)"
	if verb == "deny" {
		usage = "approvals deny ID -reason TEXT  (the agent is told it was denied, by whom and why)"
		reasonHelp = "why, in one line; the agent sees it (required)"
	}
	fs := newFlagSet("approvals "+verb, usage)
	var cf clientFlags
	cf.register(fs)
	reason := fs.String("reason", "", reasonHelp)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one approval ID (mcpmesh approvals list -state pending shows them)")
	}
	if verb == "deny" && *reason == "" {
		return usagef("-reason is required to deny: say why, e.g. -reason \"amount above the quarterly limit\"")
	}
	c, ctx, cancel, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	res, err := c.DecideApproval(ctx, pos[0], verb == "approve", *reason)
	if err != nil {
		return err
	}
	return cf.print(stdout, res, func(tw *tabwriter.Writer) {
		what := "approved"
		if res.State == state.ApprovalDenied {
			what = "denied"
		}
		fmt.Fprintf(tw, "%s %s: %s's call of %s/%s@%s (index %d)", what, res.ID, res.Caller, res.Server, res.Tool, res.Version, res.ModifyIndex)
		if res.Reason != "" {
			fmt.Fprintf(tw, ": %s", strconv.Quote(res.Reason))
		}
		fmt.Fprintln(tw)
		if what == "approved" {
			fmt.Fprintf(tw, "the call runs once, if it is still held or retried with its id before %s\n", res.ExpiresAt.UTC().Format(time.RFC3339))
		}
	})
}
