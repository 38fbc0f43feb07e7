package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"text/tabwriter"
)

func runProfile(ctx context.Context, args []string, stdout io.Writer) error {
	return dispatch(ctx, "profile", args, stdout, []subcommand{
		{"set", profileSet}, {"show", profileShow}, {"list", profileList}, {"delete", profileDelete},
	})
}

// pinsTable writes a profile's pins, by server.
func pinsTable(tw *tabwriter.Writer, principal string, pins map[string]string) {
	for _, server := range slices.Sorted(maps.Keys(pins)) {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", principal, server, pins[server])
	}
}

func profileSet(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("profile set", "profile set PRINCIPAL SERVER@VERSION [SERVER@VERSION ...]  (replaces the principal's pins)")
	var cf clientFlags
	cf.register(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 2 {
		return usagef("want a PRINCIPAL (apikey:<id> or a SPIFFE ID) and at least one SERVER@VERSION")
	}
	pins := map[string]string{}
	for _, ref := range pos[1:] {
		name, version, err := splitRef(ref, true)
		if err != nil {
			return err
		}
		if prev, dup := pins[name]; dup && prev != version {
			return usagef("%s is pinned twice (%s and %s)", name, prev, version)
		}
		pins[name] = version
	}
	c, ctx, cancel, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	p, err := c.SetProfile(ctx, pos[0], pins)
	if err != nil {
		return err
	}
	return cf.print(stdout, p, func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "PRINCIPAL\tSERVER\tVERSION")
		pinsTable(tw, p.Principal, p.Pins)
	})
}

func profileShow(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("profile show", "profile show PRINCIPAL [-consistent]")
	var cf clientFlags
	cf.register(fs)
	consistent := consistentFlag(fs, "write")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one PRINCIPAL (apikey:<id> or a SPIFFE ID)")
	}
	c, ctx, cancel, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	p, err := c.Profile(ctx, pos[0], *consistent)
	if err != nil {
		return err
	}
	return cf.print(stdout, p, func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "PRINCIPAL\tSERVER\tVERSION")
		pinsTable(tw, p.Principal, p.Pins)
		fmt.Fprintf(tw, "\nupdated %s by %s\n", fmtTime(p.UpdatedAt), p.UpdatedBy)
	})
}

func profileList(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("profile list", "profile list [-consistent]")
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
	ps, err := c.Profiles(ctx, *consistent)
	if err != nil {
		return err
	}
	return cf.print(stdout, ps, func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "PRINCIPAL\tSERVER\tVERSION")
		for _, p := range ps {
			pinsTable(tw, p.Principal, p.Pins)
		}
	})
}

func profileDelete(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("profile delete", "profile delete PRINCIPAL")
	var cf clientFlags
	cf.register(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one PRINCIPAL")
	}
	c, ctx, cancel, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if err := c.DeleteProfile(ctx, pos[0]); err != nil {
		return err
	}
	return cf.print(stdout, map[string]string{"deleted": pos[0]}, func(tw *tabwriter.Writer) {
		fmt.Fprintf(tw, "profile of %s deleted; its calls get the newest live versions\n", pos[0])
	})
}
