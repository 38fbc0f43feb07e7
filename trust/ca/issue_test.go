package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

func TestIssueX509SVID(t *testing.T) {
	c := mustInit(t, filepath.Join(t.TempDir(), "ca"), hrTD, fixedClock(t0))
	id := spiffeid.RequireFromPath(hrTD, "/mcpmesh/node/1")

	svid, err := c.IssueX509SVID(id, time.Hour)
	if err != nil {
		t.Fatalf("IssueX509SVID: %v", err)
	}
	leaf := svid.Certificates[0]

	type leafFacts struct {
		ID                  string
		Chain               int
		URIs                []string
		IsCA                bool
		KeyUsage            x509.KeyUsage
		ExtKeyUsage         []x509.ExtKeyUsage
		NotBefore, NotAfter time.Time
		P256                bool
		SerialFits128Bits   bool
	}
	var uris []string
	for _, u := range leaf.URIs {
		uris = append(uris, u.String())
	}
	pub, _ := leaf.PublicKey.(*ecdsa.PublicKey)
	got := leafFacts{
		ID:                svid.ID.String(),
		Chain:             len(svid.Certificates),
		URIs:              uris,
		IsCA:              leaf.IsCA,
		KeyUsage:          leaf.KeyUsage,
		ExtKeyUsage:       leaf.ExtKeyUsage,
		NotBefore:         leaf.NotBefore,
		NotAfter:          leaf.NotAfter,
		P256:              pub != nil && pub.Curve == elliptic.P256(),
		SerialFits128Bits: leaf.SerialNumber.Sign() > 0 && leaf.SerialNumber.BitLen() <= 128,
	}
	want := leafFacts{
		ID:                "spiffe://hr.example.corp/mcpmesh/node/1",
		Chain:             1,
		URIs:              []string{"spiffe://hr.example.corp/mcpmesh/node/1"},
		KeyUsage:          x509.KeyUsageDigitalSignature,
		ExtKeyUsage:       []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		NotBefore:         t0.Add(-time.Minute),
		NotAfter:          t0.Add(time.Hour),
		P256:              true,
		SerialFits128Bits: true,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("issued leaf (-want +got):\n%s", diff)
	}

	// It is a valid X509-SVID by go-spiffe's rules, and verifies against the
	// CA's bundle while valid.
	certPEM, keyPEM, err := svid.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x509svid.Parse(certPEM, keyPEM); err != nil {
		t.Errorf("issued SVID does not parse as an X509-SVID: %v", err)
	}
	gotID, _, err := x509svid.Verify(svid.Certificates, c.Bundle(), x509svid.WithTime(t0))
	if err != nil {
		t.Fatalf("issued SVID does not verify against the bundle: %v", err)
	}
	if gotID != id {
		t.Errorf("verified ID = %v, want %v", gotID, id)
	}
	if _, _, err := x509svid.Verify(svid.Certificates, c.Bundle(), x509svid.WithTime(t0.Add(61*time.Minute))); err == nil {
		t.Error("SVID still verifies after its ttl")
	}

	again, err := c.IssueX509SVID(id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if again.Certificates[0].SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Error("two SVIDs share a serial number")
	}
	if again.PrivateKey.Public().(*ecdsa.PublicKey).Equal(svid.PrivateKey.Public()) {
		t.Error("two SVIDs share a key")
	}
}

func TestIssueX509SVIDCappedAtCAExpiry(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	created := mustInit(t, dir, hrTD, fixedClock(t0))
	caEnd := created.Bundle().X509Authorities()[0].NotAfter

	c, err := Load(dir, fixedClock(caEnd.Add(-30*time.Minute)))
	if err != nil {
		t.Fatal(err)
	}
	svid, err := c.IssueX509SVID(spiffeid.RequireFromPath(hrTD, "/agent/x"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got := svid.Certificates[0].NotAfter; !got.Equal(caEnd) {
		t.Errorf("NotAfter = %v, want the CA's expiry %v", got, caEnd)
	}
}

func TestIssueX509SVIDErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	created := mustInit(t, dir, hrTD, fixedClock(t0))
	caEnd := created.Bundle().X509Authorities()[0].NotAfter
	expired, err := Load(dir, fixedClock(caEnd.Add(time.Second)))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		ca   *CA
		id   spiffeid.ID
		ttl  time.Duration
		want string
	}{
		{"foreign trust domain", created, spiffeid.RequireFromPath(financeTD, "/mcpmesh/node/1"), time.Hour, `not in trust domain "hr.example.corp"`},
		{"empty ID", created, spiffeid.ID{}, time.Hour, "SPIFFE ID is empty"},
		{"trust domain ID", created, hrTD.ID(), time.Hour, "names a trust domain"},
		{"zero ttl", created, spiffeid.RequireFromPath(hrTD, "/agent/x"), 0, "not positive"},
		{"expired CA", expired, spiffeid.RequireFromPath(hrTD, "/agent/x"), time.Hour, "expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svid, err := tt.ca.IssueX509SVID(tt.id, tt.ttl)
			if err == nil {
				t.Fatalf("IssueX509SVID issued %v, want an error", svid.ID)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}
