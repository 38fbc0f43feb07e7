package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpmesh/mcpmesh/trust/ca"
)

func runTrust(ctx context.Context, args []string, stdout io.Writer) error {
	return dispatch(ctx, "trust", args, stdout, []subcommand{
		{"init", func(_ context.Context, args []string, stdout io.Writer) error { return trustInit(args, stdout) }},
		{"issue", func(_ context.Context, args []string, stdout io.Writer) error { return trustIssue(args, stdout) }},
	})
}

func trustInit(args []string, stdout io.Writer) error {
	fs := newFlagSet("trust init", "trust init -trust-domain TD -out DIR")
	tdName := fs.String("trust-domain", "", "the BU's SPIFFE trust domain, e.g. hr.example.corp")
	out := fs.String("out", "", "directory to create the CA in (ca.crt, ca.key)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *tdName == "" || *out == "" {
		return usagef("want -trust-domain TD and -out DIR")
	}
	td, err := spiffeid.TrustDomainFromString(*tdName)
	if err != nil {
		return usagef("-trust-domain %q: %v", *tdName, err)
	}
	c, err := ca.Init(*out, td)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created CA for %s in %s (keep ca.key secret; nodes name this directory in trust.ca_dir)\n", c.TrustDomain(), *out)
	return nil
}

func trustIssue(args []string, stdout io.Writer) error {
	fs := newFlagSet("trust issue", "trust issue -ca-dir DIR -spiffe-id ID -out DIR [-ttl 24h]")
	caDir := fs.String("ca-dir", "", "the trust domain's CA directory")
	idStr := fs.String("spiffe-id", "", "SPIFFE ID to issue, e.g. spiffe://hr.example.corp/admin/alice")
	out := fs.String("out", "", "directory to write svid.crt, svid.key and bundle.crt to")
	ttl := fs.Duration("ttl", 24*time.Hour, "lifetime of the SVID")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *caDir == "" || *idStr == "" || *out == "" {
		return usagef("want -ca-dir DIR, -spiffe-id ID and -out DIR")
	}
	id, err := spiffeid.FromString(*idStr)
	if err != nil {
		return usagef("-spiffe-id %q: %v", *idStr, err)
	}
	c, err := ca.Load(*caDir)
	if err != nil {
		return err
	}
	s, err := c.IssueX509SVID(id, *ttl)
	if err != nil {
		return err
	}
	if err := ca.WriteSVID(*out, s, c.Bundle()); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "issued %s, valid until %s, in %s\n", id, s.Certificates[0].NotAfter.UTC().Format(time.RFC3339), *out)
	return nil
}
