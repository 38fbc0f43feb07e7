package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/mcpmesh/mcpmesh/registry/apply"
)

const applyHelp = `Usage: mcpmesh apply -f DIR [-dry-run]

Applies a catalog kept in git: every server card under DIR (*.json files,
recursively, that are server cards) and the tenants of DIR/tenants.yaml
(a list of {name, displayName, owners}), idempotently: applying the same
directory again changes nothing and says so. DIR/*.cedar replace the policy
set and DIR/limits.yaml the rate limit set, each as a whole (a list of
{identity | tenant | tool | tenant and tool, rate such as 100/s, burst});
without them the registry's policies and limits are left alone.

Each object gets one line: create, update (with the fields), unchanged or
conflict, then a summary. A card that differs from the registered card of
the same NAME@VERSION is a conflict: versions are immutable, so bump the
version. Everything is checked before the first write: an invalid card or
a conflict aborts the whole apply (exit 1), listing every problem.

Lifecycle is not declared here: approval is a reviewer's act. apply only
submits; new versions wait in state "submitted" for
` + "`mcpmesh registry approve`" + `. It never approves, deprecates, retires or
deletes anything, and leaves alone what DIR does not mention.

-dry-run prints the plan and changes nothing; it exits 1 when the plan has
conflicts, as apply would.

Flags:
`

func runApply(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("apply", "apply -f DIR [-dry-run]")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), applyHelp)
		fs.PrintDefaults()
	}
	var cf clientFlags
	cf.register(fs)
	dir := fs.String("f", "", "catalog directory: server cards (*.json, recursively) and tenants.yaml")
	dryRun := fs.Bool("dry-run", false, "print what would be created, updated, unchanged or in conflict, and change nothing")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q: pass the catalog directory as -f DIR", pos[0])
	}
	if *dir == "" {
		return usagef("want -f DIR, the catalog directory")
	}
	if cf.output != "table" && cf.output != "json" {
		return usagef("-o %q: use table or json", cf.output)
	}

	// Check every file locally first: a bad catalog fails without a
	// credential or a round trip.
	cat, err := apply.Load(*dir)
	var invalid *apply.InvalidError
	if errors.As(err, &invalid) {
		if cf.output == "json" {
			printApply(stdout, &cf, applyOutput{Dir: *dir, DryRun: *dryRun, Changes: []apply.Change{}, Problems: invalid.Problems})
		} else {
			for _, p := range invalid.Problems {
				fmt.Fprintln(os.Stderr, p.String())
			}
		}
		return errors.New(invalid.Summary())
	}
	if err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	plan, err := apply.NewPlan(ctx, c, cat)
	if err != nil {
		return err
	}
	if *dryRun {
		printApply(stdout, &cf, planOutput(plan, true))
		if n := plan.Counts().Conflict; n > 0 {
			return fmt.Errorf("%s: apply would refuse this catalog; bump the version of each conflicting card", countOf(n, "conflict"))
		}
		return nil
	}
	res, err := apply.Apply(ctx, c, plan)
	if errors.Is(err, apply.ErrConflicts) {
		printApply(stdout, &cf, planOutput(plan, false))
		return err
	}
	if res != nil {
		printApply(stdout, &cf, planOutput(res, false))
	}
	return err
}

// applyOutput is the -o json shape of apply: the plan (with -dry-run) or
// the result, or the problems of an invalid catalog.
type applyOutput struct {
	Dir      string          `json:"dir"`
	DryRun   bool            `json:"dryRun"`
	Changes  []apply.Change  `json:"changes"`
	Skipped  []apply.Skipped `json:"skipped,omitempty"`
	Problems []apply.Problem `json:"problems,omitempty"`
	Counts   apply.Counts    `json:"counts"`
}

func planOutput(p *apply.Plan, dryRun bool) applyOutput {
	return applyOutput{Dir: p.Dir, DryRun: dryRun, Changes: p.Changes, Skipped: p.Skipped, Counts: p.Counts()}
}

func printApply(w io.Writer, cf *clientFlags, out applyOutput) {
	if cf.output == "json" {
		cf.print(w, out, nil)
		return
	}
	pending, createdServer := 0, false
	for _, ch := range out.Changes {
		line := ch.String()
		if !out.DryRun && out.Counts.Conflict == 0 && (ch.Action == apply.Create || ch.Action == apply.Update) && !ch.Applied {
			line += " (not applied)"
			pending++
		}
		createdServer = createdServer || (ch.Applied && ch.Kind == apply.KindServer)
		fmt.Fprintln(w, line)
	}
	for _, s := range out.Skipped {
		fmt.Fprintf(w, "skip %s: %s\n", s.File, s.Reason)
	}
	n := out.Counts
	switch {
	case out.DryRun:
		fmt.Fprintf(w, "dry run: %d to create, %d to update, %d unchanged, %s; nothing was changed\n", n.Create, n.Update, n.Unchanged, countOf(n.Conflict, "conflict"))
	case n.Conflict > 0:
		fmt.Fprintf(w, "refused: %s (and %d to create, %d to update, %d unchanged); nothing was changed\n", countOf(n.Conflict, "conflict"), n.Create, n.Update, n.Unchanged)
	case pending > 0:
		fmt.Fprintf(w, "stopped: %d created, %d updated, %d unchanged, %d not applied; apply again once the error is fixed\n", n.Create-pendingOf(out, apply.Create), n.Update-pendingOf(out, apply.Update), n.Unchanged, pending)
	case n.Create+n.Update == 0:
		fmt.Fprintf(w, "nothing to change: %d unchanged\n", n.Unchanged)
	default:
		fmt.Fprintf(w, "applied: %d created, %d updated, %d unchanged", n.Create, n.Update, n.Unchanged)
		if createdServer {
			fmt.Fprint(w, "; new versions await review (mcpmesh registry approve)")
		}
		fmt.Fprintln(w)
	}
}

// pendingOf counts the changes of an action that were not applied.
func pendingOf(out applyOutput, a apply.Action) int {
	n := 0
	for _, ch := range out.Changes {
		if ch.Action == a && !ch.Applied {
			n++
		}
	}
	return n
}

func countOf(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
