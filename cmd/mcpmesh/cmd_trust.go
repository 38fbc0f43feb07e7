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
	fs := newFlagSet("trust issue", "trust issue -ca-dir DIR -spiffe-id ID (-out DIR [-ttl 24h] | -jwt -audience AUD [-ttl 5m])")
	caDir := fs.String("ca-dir", "", "the trust domain's CA directory")
	idStr := fs.String("spiffe-id", "", "SPIFFE ID to issue, e.g. spiffe://hr.example.corp/admin/alice")
	out := fs.String("out", "", "directory to write svid.crt, svid.key and bundle.crt to (X.509-SVID)")
	jwtMode := fs.Bool("jwt", false, "issue a JWT-SVID and print it, instead of writing an X.509-SVID")
	audience := fs.String("audience", "", "with -jwt: the audience, e.g. spiffe://hr.example.corp/mcpmesh/gateway (a node's mcp.auth.jwt_svid.audience)")
	ttl := fs.Duration("ttl", 0, "lifetime of the SVID (default 24h for an X.509-SVID, 5m for a JWT-SVID)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case *caDir == "" || *idStr == "":
		return usagef("want -ca-dir DIR and -spiffe-id ID, and -out DIR or -jwt -audience AUD")
	case *jwtMode && *audience == "":
		return usagef("-jwt needs -audience AUD: the node's mcp.auth.jwt_svid.audience (default spiffe://<trust domain>/mcpmesh/gateway)")
	case *jwtMode && *out != "":
		return usagef("-jwt prints the token; -out is for X.509-SVIDs")
	case !*jwtMode && *out == "":
		return usagef("want -out DIR (or -jwt -audience AUD for a JWT-SVID)")
	case !*jwtMode && *audience != "":
		return usagef("-audience is for JWT-SVIDs; add -jwt")
	}
	id, err := spiffeid.FromString(*idStr)
	if err != nil {
		return usagef("-spiffe-id %q: %v", *idStr, err)
	}
	c, err := ca.Load(*caDir)
	if err != nil {
		return err
	}
	if *jwtMode {
		if *ttl == 0 {
			*ttl = 5 * time.Minute
		}
		token, err := c.IssueJWTSVID(id, []string{*audience}, *ttl)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, token)
		return nil
	}
	if *ttl == 0 {
		*ttl = 24 * time.Hour
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
