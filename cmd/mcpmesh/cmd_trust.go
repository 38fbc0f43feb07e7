package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpmesh/mcpmesh/trust/ca"
	"github.com/mcpmesh/mcpmesh/trust/spire"
)

func runTrust(ctx context.Context, args []string, stdout io.Writer) error {
	return dispatch(ctx, "trust", args, stdout, []subcommand{
		{"init", func(_ context.Context, args []string, stdout io.Writer) error { return trustInit(args, stdout) }},
		{"issue", trustIssue},
		{"manifest", runTrustManifest},
		{"gossip-key", func(_ context.Context, args []string, stdout io.Writer) error { return trustGossipKey(args, stdout) }},
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

func trustIssue(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("trust issue", "trust issue (-ca-dir DIR | -workload-api ADDR) [-spiffe-id ID] (-out DIR | -jwt -audience AUD) [-ttl D]")
	caDir := fs.String("ca-dir", "", "the trust domain's CA directory")
	workloadAPI := fs.String("workload-api", "", "fetch the SVID from a SPIRE agent's Workload API instead of issuing it, e.g. unix:///run/spire/sockets/agent.sock")
	idStr := fs.String("spiffe-id", "", "SPIFFE ID to issue, e.g. spiffe://hr.example.corp/admin/alice (with -workload-api: which of the workload's SVIDs; default its first)")
	out := fs.String("out", "", "directory to write svid.crt, svid.key and bundle.crt to (X.509-SVID)")
	jwtMode := fs.Bool("jwt", false, "get a JWT-SVID and print it, instead of writing an X.509-SVID")
	audience := fs.String("audience", "", "with -jwt: the audience, e.g. spiffe://hr.example.corp/mcpmesh/gateway (a node's mcp.auth.jwt_svid.audience)")
	ttl := fs.Duration("ttl", 0, "lifetime of an SVID from -ca-dir (default 24h for an X.509-SVID, 5m for a JWT-SVID); SPIRE decides its own")
	timeout := fs.Duration("timeout", 30*time.Second, "with -workload-api: how long to wait for SPIRE")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case (*caDir == "") == (*workloadAPI == ""):
		return usagef("want either -ca-dir DIR (issue from the embedded CA) or -workload-api ADDR (fetch from SPIRE)")
	case *caDir != "" && *idStr == "":
		return usagef("-ca-dir needs -spiffe-id ID")
	case *workloadAPI != "" && *ttl != 0:
		return usagef("-ttl applies to -ca-dir only; SPIRE sets the lifetime of what it issues")
	case *jwtMode && *audience == "":
		return usagef("-jwt needs -audience AUD: the node's mcp.auth.jwt_svid.audience (default spiffe://<trust domain>/mcpmesh/gateway)")
	case *jwtMode && *out != "":
		return usagef("-jwt prints the token; -out is for X.509-SVIDs")
	case !*jwtMode && *out == "":
		return usagef("want -out DIR (or -jwt -audience AUD for a JWT-SVID)")
	case !*jwtMode && *audience != "":
		return usagef("-audience is for JWT-SVIDs; add -jwt")
	}
	var id spiffeid.ID
	if *idStr != "" {
		var err error
		if id, err = spiffeid.FromString(*idStr); err != nil {
			return usagef("-spiffe-id %q: %v", *idStr, err)
		}
	}
	if *workloadAPI != "" {
		ctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		if *jwtMode {
			token, err := spire.FetchJWT(ctx, *workloadAPI, id, *audience)
			if err != nil {
				return err
			}
			fmt.Fprintln(stdout, token)
			return nil
		}
		s, bundle, err := spire.FetchX509(ctx, *workloadAPI, id)
		if err != nil {
			return err
		}
		if err := ca.WriteSVID(*out, s, bundle); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "fetched %s from %s, valid until %s, in %s\n", s.ID, *workloadAPI, s.Certificates[0].NotAfter.UTC().Format(time.RFC3339), *out)
		return nil
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
