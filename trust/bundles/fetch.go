package bundles

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

// MaxBundleSize bounds a bundle endpoint's answer. A bundle of a few
// roots and JWT keys is a few kilobytes; 1 MiB leaves room for many.
const MaxBundleSize = 1 << 20

// fetchBundle gets trust domain td's bundle from a bundle endpoint
// (https_spiffe profile: the server must present SPIFFE ID id, verified
// against auth). It does what go-spiffe's federation.FetchBundle does,
// written here because that one reads the answer without a size bound
// and sends the request through any proxy the environment names; a bundle
// endpoint of another BU is outside input.
func fetchBundle(ctx context.Context, td spiffeid.TrustDomain, url string, auth *spiffebundle.Bundle, id spiffeid.ID) (*spiffebundle.Bundle, error) {
	tr := &http.Transport{TLSClientConfig: tlsconfig.TLSClientConfig(auth, tlsconfig.AuthorizeID(id)), DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, http.NoBody)
	if err != nil {
		return nil, fmt.Errorf("bundle endpoint URL: %w", err)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("could not GET bundle: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("bundle endpoint answered %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBundleSize+1))
	if err != nil {
		return nil, fmt.Errorf("read bundle: %w", err)
	}
	if len(body) > MaxBundleSize {
		return nil, fmt.Errorf("bundle endpoint answered more than %d bytes; refused", MaxBundleSize)
	}
	return spiffebundle.Parse(td, body)
}
