package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"text/tabwriter"

	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/registry/state"
)

const killUsage = `kill KIND NAME -reason TEXT   (KIND: tool, server, tenant or agent)
       mcpmesh kill -list [-consistent]

  tool    <server>/<tool>, e.g. corp.finance/ledger/transfer_funds
  server  a registry server name, e.g. corp.finance/ledger
  tenant  a tenant name, e.g. payroll
  agent   a principal id: apikey:<id>, a SPIFFE ID, oidc:<subject> or anonymous

Every node of the namespace refuses what the switch covers (JSON-RPC error
-32012, with the reason) once it has applied it; mcpmesh revive releases it.`

// killTarget checks the KIND NAME arguments of kill and revive.
func killTarget(pos []string) (state.KillKind, string, error) {
	if len(pos) != 2 {
		return "", "", usagef("want KIND NAME, KIND being tool, server, tenant or agent (e.g. server corp.finance/ledger)")
	}
	kind := state.KillKind(pos[0])
	if !slices.Contains(state.KillKinds, kind) {
		return "", "", usagef("kind %q: want tool, server, tenant or agent", pos[0])
	}
	return kind, pos[1], nil
}

func runKill(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("kill", killUsage)
	var cf clientFlags
	cf.register(fs)
	reason := fs.String("reason", "", "why, in one line; refused callers see it (required)")
	list := fs.Bool("list", false, "list the switches pulled instead")
	consistent := consistentFlag(fs, "write")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *list {
		if len(pos) != 0 || *reason != "" {
			return usagef("-list takes no KIND, NAME or -reason")
		}
		return killList(ctx, cf, *consistent, stdout)
	}
	kind, name, err := killTarget(pos)
	if err != nil {
		return err
	}
	if *reason == "" {
		return usagef("-reason is required: say why, e.g. -reason \"incident 4411: wrong balances\"")
	}
	c, ctx, cancel, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	k, err := c.Kill(ctx, api.KillRequest{Kind: kind, Name: name, Reason: *reason})
	if err != nil {
		return err
	}
	return cf.print(stdout, k, func(tw *tabwriter.Writer) {
		switch {
		case k.Unchanged:
			fmt.Fprintf(tw, "%s %s was already killed with this reason (by %s at %s)\n", k.Kind, k.Name, k.By, fmtTime(k.At))
		default:
			fmt.Fprintf(tw, "killed %s %s: %s (index %d); every node refuses it once it has applied the write\n", k.Kind, k.Name, strconv.Quote(k.Reason), k.Index)
		}
		if k.Warning != "" {
			fmt.Fprintf(tw, "warning: %s\n", k.Warning)
		}
	})
}

func killList(ctx context.Context, cf clientFlags, consistent bool, stdout io.Writer) error {
	c, ctx, cancel, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	ks, err := c.Kills(ctx, consistent)
	if err != nil {
		return err
	}
	return cf.print(stdout, ks, func(tw *tabwriter.Writer) {
		if len(ks) == 0 {
			fmt.Fprintln(tw, "no kill switch is pulled")
			return
		}
		fmt.Fprintln(tw, "KIND\tNAME\tREASON\tBY\tAT")
		for _, k := range ks {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.Kind, k.Name, strconv.Quote(k.Reason), k.By, fmtTime(k.At))
		}
	})
}

func runRevive(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("revive", "revive KIND NAME   (KIND: tool, server, tenant or agent; mcpmesh kill -list shows the switches)")
	var cf clientFlags
	cf.register(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	kind, name, err := killTarget(pos)
	if err != nil {
		return err
	}
	c, ctx, cancel, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	rv, err := c.Revive(ctx, kind, name)
	if err != nil {
		return err
	}
	return cf.print(stdout, rv, func(tw *tabwriter.Writer) {
		fmt.Fprintf(tw, "revived %s %s (index %d); every node serves it again once it has applied the write\n", kind, name, rv.Index)
	})
}
