package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/mcpmesh/mcpmesh/registry/api"
)

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

var _ flag.Value = (*multiFlag)(nil)

func runTenant(ctx context.Context, args []string, stdout io.Writer) error {
	return dispatch(ctx, "tenant", args, stdout, []subcommand{{"add", tenantAdd}, {"list", tenantList}})
}

func tenantAdd(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("tenant add", "tenant add NAME -owner WHO [-owner WHO2] [-display-name TEXT]")
	var cf clientFlags
	cf.register(fs)
	var owners multiFlag
	fs.Var(&owners, "owner", "person or group accountable for the tenant (repeatable)")
	display := fs.String("display-name", "", "human-readable name")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one tenant NAME")
	}
	if len(owners) == 0 {
		return usagef("want at least one -owner")
	}
	c, ctx, cancel, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	t, err := c.PutTenant(ctx, api.TenantRequest{Name: pos[0], DisplayName: *display, Owners: owners})
	if err != nil {
		return err
	}
	return cf.print(stdout, t, func(tw *tabwriter.Writer) {
		fmt.Fprintf(tw, "tenant %s (owners %s)\n", t.Name, strings.Join(t.Owners, ", "))
	})
}

func tenantList(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("tenant list", "tenant list [-consistent]")
	var cf clientFlags
	cf.register(fs)
	consistent := consistentFlag(fs, "write")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	c, ctx, cancel, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	ts, err := c.Tenants(ctx, *consistent)
	if err != nil {
		return err
	}
	return cf.print(stdout, ts, func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "TENANT\tDISPLAY NAME\tOWNERS\tCREATED")
		for _, t := range ts {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.Name, t.DisplayName, strings.Join(t.Owners, ","), fmtTime(t.CreatedAt))
		}
	})
}
