package ca

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Names of the files in an SVID directory, as written by WriteSVID.
const (
	// SVIDCertFile holds the PEM-encoded certificate chain, leaf first.
	SVIDCertFile = "svid.crt"
	// SVIDKeyFile holds the PEM-encoded PKCS#8 private key, mode 0600.
	SVIDKeyFile = "svid.key"
	// BundleFile holds the PEM-encoded X.509 authorities of the SVID's trust
	// domain.
	BundleFile = "bundle.crt"
)

// WriteSVID writes svid and the bundle of its trust domain into dir, creating
// dir (mode 0700) if needed and replacing any SVID there. Each file is
// replaced atomically. It is how an admin or agent is handed an SVID.
func WriteSVID(dir string, svid *x509svid.SVID, bundle *x509bundle.Bundle) error {
	if svid == nil || bundle == nil {
		return errors.New("write SVID: SVID and bundle are required")
	}
	if bundle.TrustDomain() != svid.ID.TrustDomain() {
		return fmt.Errorf("write SVID for %s to %s: bundle is for trust domain %q, not %q", svid.ID, dir, bundle.TrustDomain().Name(), svid.ID.TrustDomain().Name())
	}
	if bundle.Empty() {
		return fmt.Errorf("write SVID for %s to %s: bundle holds no X.509 authorities", svid.ID, dir)
	}
	certPEM, keyPEM, err := svid.Marshal()
	if err != nil {
		return fmt.Errorf("write SVID for %s to %s: %w", svid.ID, dir, err)
	}
	bundlePEM, err := bundle.Marshal()
	if err != nil {
		return fmt.Errorf("write SVID for %s to %s: %w", svid.ID, dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write SVID for %s: %w", svid.ID, err)
	}
	files := []struct {
		name string
		data []byte
		perm os.FileMode
	}{
		{SVIDKeyFile, keyPEM, 0o600},
		{SVIDCertFile, certPEM, 0o644},
		{BundleFile, bundlePEM, 0o644},
	}
	for _, f := range files {
		if err := writeFileAtomic(filepath.Join(dir, f.name), f.data, f.perm); err != nil {
			return fmt.Errorf("write SVID for %s: %w", svid.ID, err)
		}
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("write SVID for %s: %w", svid.ID, err)
	}
	return nil
}

// LoadSVID reads an SVID and its trust domain's bundle from dir, as written
// by WriteSVID. It checks that the chain was issued by an authority in the
// bundle but not whether the SVID has expired, so that a caller can say so.
func LoadSVID(dir string) (*x509svid.SVID, *x509bundle.Bundle, error) {
	svid, err := x509svid.Load(filepath.Join(dir, SVIDCertFile), filepath.Join(dir, SVIDKeyFile))
	if err != nil {
		return nil, nil, fmt.Errorf("load SVID from %s: %w", dir, err)
	}
	td := svid.ID.TrustDomain()
	bundle, err := x509bundle.Load(td, filepath.Join(dir, BundleFile))
	if err != nil {
		return nil, nil, fmt.Errorf("load SVID from %s: %w", dir, err)
	}
	if bundle.Empty() {
		return nil, nil, fmt.Errorf("load SVID from %s: %s holds no certificates", dir, BundleFile)
	}
	top := svid.Certificates[len(svid.Certificates)-1]
	for _, root := range bundle.X509Authorities() {
		if top.Equal(root) || top.CheckSignatureFrom(root) == nil {
			return svid, bundle, nil
		}
	}
	return nil, nil, fmt.Errorf("load SVID from %s: %s (%s) was not issued by any authority in %s; write them again from the same CA", dir, SVIDCertFile, svid.ID, BundleFile)
}
