package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/mcpmesh/mcpmesh/node/validate"
	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/registry/card"
)

func runRegistry(ctx context.Context, args []string, stdout io.Writer) error {
	subs := []subcommand{{"submit", registrySubmit}, {"list", registryList}, {"show", registryShow}}
	for _, action := range []string{"approve", "reject", "deprecate", "retire", "quarantine"} {
		subs = append(subs, subcommand{action, func(ctx context.Context, args []string, stdout io.Writer) error {
			return registryTransition(ctx, action, args, stdout)
		}})
	}
	return dispatch(ctx, "registry", args, stdout, subs)
}

func registrySubmit(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("registry submit", "registry submit -f server.json")
	var cf clientFlags
	cf.register(fs)
	file := fs.String("f", "", "server card (server.json with _meta[\"io.mcpmesh/governance\"] and _meta[\"io.mcpmesh/tools\"])")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *file == "" {
		return usagef("want -f FILE")
	}
	raw, err := os.ReadFile(*file)
	if err != nil {
		return err
	}
	// Check locally first so a bad card fails without a round trip; the
	// node checks again.
	parsed, err := card.Parse(raw)
	if err == nil {
		err = validate.CheckCard(parsed)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", *file, err)
	}
	c, ctx, cancel, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	res, err := c.Submit(ctx, raw)
	if err != nil {
		return err
	}
	return cf.print(stdout, res, func(tw *tabwriter.Writer) {
		verb := "submitted"
		if res.Unchanged {
			verb = "unchanged (identical card already submitted)"
		}
		fmt.Fprintf(tw, "%s@%s %s; state %s; %d tools\n", res.Server, res.Version, verb, res.State, len(res.Tools))
		for _, t := range res.Tools {
			fmt.Fprintf(tw, "  %s\t%s\n", t.Name, t.Hash)
		}
	})
}

func registryList(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("registry list", "registry list [-state STATE] [-consistent]")
	var cf clientFlags
	cf.register(fs)
	st := fs.String("state", "", "only versions in this state (submitted, approved, deprecated, retired, rejected, quarantined)")
	consistent := consistentFlag(fs, "write")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	c, ctx, cancel, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	rows, err := c.ListServers(ctx, card.State(*st), *consistent)
	if err != nil {
		return err
	}
	return cf.print(stdout, rows, func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "SERVER\tVERSION\tSTATE\tRISK\tTOOLS\tUPDATED")
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", r.Server, r.Version, r.State, r.RiskTier, r.Tools, fmtTime(r.UpdatedAt))
		}
	})
}

func registryShow(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("registry show", "registry show NAME[@VERSION] [-consistent]")
	var cf clientFlags
	cf.register(fs)
	consistent := consistentFlag(fs, "write")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one NAME or NAME@VERSION")
	}
	name, version, err := splitRef(pos[0], false)
	if err != nil {
		return err
	}
	c, ctx, cancel, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if version == "" {
		vs, err := c.ServerVersions(ctx, name, *consistent)
		if err != nil {
			return err
		}
		return cf.print(stdout, vs, func(tw *tabwriter.Writer) {
			fmt.Fprintf(tw, "%s\n", name)
			fmt.Fprintln(tw, "VERSION\tSTATE\tTOOLS\tSUBMITTED BY\tUPDATED")
			for _, v := range vs {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", v.Version, v.State, len(v.Tools), v.SubmittedBy, fmtTime(v.UpdatedAt))
			}
		})
	}
	d, err := c.Version(ctx, name, version, *consistent)
	if err != nil {
		return err
	}
	return cf.print(stdout, d, func(tw *tabwriter.Writer) {
		g := d.Governance
		fmt.Fprintf(tw, "%s@%s\t%s\n", d.Server, d.Version, d.State)
		fmt.Fprintf(tw, "description\t%s\n", d.Description)
		fmt.Fprintf(tw, "owner / team\t%s / %s\n", g.Owner, g.Team)
		fmt.Fprintf(tw, "classification / risk\t%s / %s\n", g.DataClassification, g.RiskTier)
		fmt.Fprintf(tw, "cost per call\t%g %s\n", g.CostPerCall, g.Currency)
		up := g.Upstream.URL
		if g.Upstream.Transport == "stdio" {
			up = strings.Join(append([]string{g.Upstream.Command}, g.Upstream.Args...), " ")
		}
		fmt.Fprintf(tw, "upstream\t%s %s\n", g.Upstream.Transport, up)
		fmt.Fprintf(tw, "card hash\t%s\n", d.CardHash)
		if dep := d.Deprecation; dep != nil {
			fmt.Fprintf(tw, "deprecated\tsunset %s, replacement %s: %s\n", fmtTime(dep.Sunset), dep.Replacement, dep.Note)
		}
		fmt.Fprintln(tw, "tools:")
		for _, t := range d.ToolVersions {
			fmt.Fprintf(tw, "  %s\t%s\n", t.Name, t.Hash)
		}
		fmt.Fprintln(tw, "history:")
		for _, h := range d.History {
			from := string(h.From)
			if from == "" {
				from = "-"
			}
			fmt.Fprintf(tw, "  %s\t%s → %s\tby %s\t%s\n", fmtTime(h.At), from, h.To, h.By, h.Reason)
		}
	})
}

func registryTransition(ctx context.Context, action string, args []string, stdout io.Writer) error {
	usage := "registry " + action + " NAME@VERSION"
	switch action {
	case "reject", "quarantine":
		usage += " -reason TEXT"
	case "deprecate":
		usage += " -sunset DATE -replacement VERSION -note TEXT"
	default:
		usage += " [-reason TEXT]"
	}
	fs := newFlagSet("registry "+action, usage)
	var cf clientFlags
	cf.register(fs)
	var req api.TransitionRequest
	fs.StringVar(&req.Reason, "reason", "", "why (recorded in the version's history)")
	if action == "deprecate" {
		fs.StringVar(&req.Sunset, "sunset", "", "date after which the version answers an error (YYYY-MM-DD or RFC 3339)")
		fs.StringVar(&req.Replacement, "replacement", "", "the approved version callers should move to")
		fs.StringVar(&req.Note, "note", "", "migration note shown to callers")
	}
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one NAME@VERSION")
	}
	name, version, err := splitRef(pos[0], true)
	if err != nil {
		return err
	}
	if (action == "reject" || action == "quarantine") && req.Reason == "" {
		return usagef("-reason is required to %s", action)
	}
	if action == "deprecate" && (req.Sunset == "" || req.Replacement == "") {
		return usagef("deprecate needs -sunset DATE and -replacement VERSION")
	}
	c, ctx, cancel, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	sv, err := c.Transition(ctx, name, version, action, req)
	if err != nil {
		return err
	}
	return cf.print(stdout, sv, func(tw *tabwriter.Writer) {
		fmt.Fprintf(tw, "%s@%s is now %s\n", sv.Server, sv.Version, sv.State)
	})
}
