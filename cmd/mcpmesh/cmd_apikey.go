package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mcpmesh/mcpmesh/registry/api"
)

func runAPIKey(ctx context.Context, args []string, stdout io.Writer) error {
	return dispatch(ctx, "apikey", args, stdout, []subcommand{
		{"create", apikeyCreate}, {"list", apikeyList}, {"revoke", apikeyRevoke},
	})
}

func apikeyCreate(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("apikey create", "apikey create -tenant TENANT -name WHAT-FOR [-group G] [-scope S] [-ttl 720h]")
	var cf clientFlags
	cf.register(fs)
	tenant := fs.String("tenant", "", "the tenant the key's calls belong to (required)")
	name := fs.String("name", "", "what the key is for, e.g. payroll-nightly-export (required)")
	var groups, scopes multiFlag
	fs.Var(&groups, "group", "group the key's principal is in, for policy (repeatable)")
	fs.Var(&scopes, "scope", "scope the key carries, for policy (repeatable)")
	ttl := fs.Duration("ttl", 0, "lifetime of the key; 0 means it does not expire")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("unexpected argument %q; the key's name goes in -name", pos[0])
	}
	if *tenant == "" || *name == "" {
		return usagef("want -tenant and -name")
	}
	req := api.APIKeyRequest{Tenant: *tenant, Name: *name, Groups: groups, Scopes: scopes}
	if *ttl < 0 {
		return usagef("-ttl %s: want a positive duration, or 0 for a key that does not expire", *ttl)
	}
	if *ttl > 0 {
		req.ExpiresAt = time.Now().Add(*ttl).UTC()
	}
	c, ctx, cancel, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	k, err := c.CreateAPIKey(ctx, req)
	if err != nil {
		return err
	}
	return cf.print(stdout, k, func(tw *tabwriter.Writer) {
		fmt.Fprintf(tw, "API key %s for tenant %s (%s)\n", k.Key.ID, k.Key.Tenant, k.Key.Name)
		fmt.Fprintf(tw, "%s\n", k.Secret)
		fmt.Fprintln(tw, "This is the only time the key is shown; the node keeps only its hash. Agents send it as `Authorization: Bearer <key>`.")
	})
}

func apikeyList(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("apikey list", "apikey list [-tenant TENANT] [-consistent]")
	var cf clientFlags
	cf.register(fs)
	tenant := fs.String("tenant", "", "only this tenant's keys")
	consistent := consistentFlag(fs, "write")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	c, ctx, cancel, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	keys, err := c.APIKeys(ctx, *tenant, *consistent)
	if err != nil {
		return err
	}
	return cf.print(stdout, keys, func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "ID\tTENANT\tNAME\tGROUPS\tSCOPES\tCREATED\tEXPIRES\tREVOKED")
		for _, k := range keys {
			revoked, expires := "-", "never"
			if k.RevokedAt != nil {
				revoked = fmtTime(*k.RevokedAt) + " by " + k.RevokedBy
			}
			if !k.ExpiresAt.IsZero() {
				expires = fmtTime(k.ExpiresAt)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Tenant, k.Name,
				strings.Join(k.Groups, ","), strings.Join(k.Scopes, ","), fmtTime(k.CreatedAt), expires, revoked)
		}
	})
}

func apikeyRevoke(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("apikey revoke", "apikey revoke ID")
	var cf clientFlags
	cf.register(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one key ID (mcpmesh apikey list shows them)")
	}
	c, ctx, cancel, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	k, err := c.RevokeAPIKey(ctx, pos[0])
	if err != nil {
		return err
	}
	return cf.print(stdout, k, func(tw *tabwriter.Writer) {
		fmt.Fprintf(tw, "API key %s of tenant %s revoked\n", k.ID, k.Tenant)
	})
}
