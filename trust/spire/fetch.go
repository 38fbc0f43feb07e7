package spire

import (
	"context"
	"fmt"
	"slices"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// FetchX509 fetches the calling workload's X.509-SVID from the Workload API
// at addr, with the X.509 bundle of its trust domain: the one with SPIFFE
// ID id when SPIRE hands out several, or the default (first) when id is
// zero.
func FetchX509(ctx context.Context, addr string, id spiffeid.ID) (*x509svid.SVID, *x509bundle.Bundle, error) {
	xc, err := workloadapi.FetchX509Context(ctx, workloadapi.WithAddr(addr))
	if err != nil {
		return nil, nil, fmt.Errorf("fetch X.509-SVID from the workload API at %s: %w", addr, err)
	}
	svid := xc.DefaultSVID()
	if !id.IsZero() {
		i := slices.IndexFunc(xc.SVIDs, func(s *x509svid.SVID) bool { return s.ID == id })
		if i < 0 {
			return nil, nil, fmt.Errorf("fetch X.509-SVID from the workload API at %s: this workload is not entitled to %s (it has %s)", addr, id, idsOf(xc.SVIDs))
		}
		svid = xc.SVIDs[i]
	}
	bundle, err := xc.Bundles.GetX509BundleForTrustDomain(svid.ID.TrustDomain())
	if err != nil {
		return nil, nil, fmt.Errorf("fetch X.509-SVID from the workload API at %s: %w", addr, err)
	}
	return svid, bundle, nil
}

// FetchJWT fetches a JWT-SVID for audience from the Workload API at addr:
// for SPIFFE ID id, or the workload's default identity when id is zero.
// It returns the token.
func FetchJWT(ctx context.Context, addr string, id spiffeid.ID, audience string) (string, error) {
	svid, err := workloadapi.FetchJWTSVID(ctx, jwtsvid.Params{Audience: audience, Subject: id}, workloadapi.WithAddr(addr))
	if err != nil {
		return "", fmt.Errorf("fetch JWT-SVID from the workload API at %s: %w", addr, err)
	}
	return svid.Marshal(), nil
}

func idsOf(svids []*x509svid.SVID) string {
	var out []string
	for _, s := range svids {
		out = append(out, s.ID.String())
	}
	return fmt.Sprint(out)
}
