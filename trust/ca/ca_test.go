package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var (
	hrTD      = spiffeid.RequireTrustDomainFromString("hr.example.corp")
	financeTD = spiffeid.RequireTrustDomainFromString("finance.example.corp")
	t0        = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
)

func fixedClock(t time.Time) Option {
	return WithClock(func() time.Time { return t })
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestInit(t *testing.T) {
	tests := []struct {
		name string
		dir  func(t *testing.T) string
	}{
		{"missing nested dir", func(t *testing.T) string { return filepath.Join(t.TempDir(), "a", "b", "ca") }},
		{"existing empty dir", func(t *testing.T) string { return t.TempDir() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.dir(t)
			c, err := Init(dir, hrTD, fixedClock(t0))
			if err != nil {
				t.Fatalf("Init: %v", err)
			}
			if got := c.TrustDomain(); got != hrTD {
				t.Errorf("TrustDomain() = %v, want %v", got, hrTD)
			}

			keyInfo, err := os.Stat(filepath.Join(dir, KeyFile))
			if err != nil {
				t.Fatal(err)
			}
			if got := keyInfo.Mode().Perm(); got != 0o600 {
				t.Errorf("%s mode = %v, want 0600", KeyFile, got)
			}
			block, _ := pem.Decode(readFile(t, filepath.Join(dir, KeyFile)))
			if block == nil || block.Type != "PRIVATE KEY" {
				t.Fatalf("%s is not a PEM PRIVATE KEY", KeyFile)
			}
			if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
				t.Errorf("%s is not PKCS#8: %v", KeyFile, err)
			}

			block, _ = pem.Decode(readFile(t, filepath.Join(dir, CertFile)))
			if block == nil || block.Type != "CERTIFICATE" {
				t.Fatalf("%s is not a PEM CERTIFICATE", CertFile)
			}
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
			if !ok || pub.Curve != elliptic.P256() {
				t.Errorf("CA key is %T, want ECDSA P-256", cert.PublicKey)
			}
			type rootFacts struct {
				URIs                      []string
				IsCA, SelfSigned          bool
				CertSign                  bool
				NotBefore, NotAfter       time.Time
				BundleMatchesCertOnDiskOK bool
			}
			var uris []string
			for _, u := range cert.URIs {
				uris = append(uris, u.String())
			}
			got := rootFacts{
				URIs:                      uris,
				IsCA:                      cert.IsCA && cert.BasicConstraintsValid,
				SelfSigned:                cert.CheckSignatureFrom(cert) == nil,
				CertSign:                  cert.KeyUsage&x509.KeyUsageCertSign != 0,
				NotBefore:                 cert.NotBefore,
				NotAfter:                  cert.NotAfter,
				BundleMatchesCertOnDiskOK: c.Bundle().HasX509Authority(cert),
			}
			want := rootFacts{
				URIs:                      []string{"spiffe://hr.example.corp"},
				IsCA:                      true,
				SelfSigned:                true,
				CertSign:                  true,
				NotBefore:                 t0.Add(-time.Minute),
				NotAfter:                  t0.Add(10 * 365 * 24 * time.Hour),
				BundleMatchesCertOnDiskOK: true,
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("root certificate (-want +got):\n%s", diff)
			}
			// Nothing but the CA directory is left beside it.
			entries, err := os.ReadDir(filepath.Dir(filepath.Clean(dir)))
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 {
				t.Errorf("parent of the CA dir holds %d entries, want 1 (no temporary leftovers)", len(entries))
			}
		})
	}
}

func TestInitRefusesExistingCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	if _, err := Init(dir, hrTD); err != nil {
		t.Fatal(err)
	}
	before := readFile(t, filepath.Join(dir, KeyFile))

	_, err := Init(dir, hrTD)
	if !errors.Is(err, ErrExists) {
		t.Fatalf("second Init error = %v, want ErrExists", err)
	}
	for _, want := range []string{dir, "remove"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if !bytes.Equal(before, readFile(t, filepath.Join(dir, KeyFile))) {
		t.Error("second Init changed the existing CA key")
	}
}

func TestInitRefusesDirWithOtherFiles(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "raft.db"), []byte("x"))
	for name, f := range map[string]func() error{
		"Init":       func() error { _, err := Init(dir, hrTD); return err },
		"LoadOrInit": func() error { _, err := LoadOrInit(dir, hrTD); return err },
	} {
		err := f()
		if err == nil || !strings.Contains(err.Error(), "other files") {
			t.Errorf("%s error = %v, want one saying the directory holds other files", name, err)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	created, err := Init(dir, hrTD)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := Load(dir)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got := loaded.TrustDomain(); got != hrTD {
		t.Errorf("TrustDomain() = %v, want %v", got, hrTD)
	}
	if !loaded.Bundle().Equal(created.Bundle()) {
		t.Error("loaded CA's bundle differs from the created one")
	}
	// The loaded key signs for the same root: an SVID it issues verifies
	// against the bundle of the CA as created.
	svid, err := loaded.IssueX509SVID(spiffeid.RequireFromPath(hrTD, "/agent/x"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := svid.Certificates[0].CheckSignatureFrom(created.Bundle().X509Authorities()[0]); err != nil {
		t.Errorf("SVID from loaded CA does not chain to the created root: %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(t *testing.T, dir string)
		want     string
		notExist bool
	}{
		{
			name:     "missing directory",
			setup:    func(t *testing.T, dir string) {},
			want:     "ca.crt not found",
			notExist: true,
		},
		{
			name: "missing key",
			setup: func(t *testing.T, dir string) {
				mustInit(t, dir, hrTD)
				if err := os.Remove(filepath.Join(dir, KeyFile)); err != nil {
					t.Fatal(err)
				}
			},
			want:     "ca.key not found",
			notExist: true,
		},
		{
			name: "key of another CA",
			setup: func(t *testing.T, dir string) {
				mustInit(t, dir, hrTD)
				other := filepath.Join(t.TempDir(), "other")
				mustInit(t, other, hrTD)
				writeFile(t, filepath.Join(dir, KeyFile), readFile(t, filepath.Join(other, KeyFile)))
			},
			want: "does not belong to certificate",
		},
		{
			name: "leaf certificate instead of a CA",
			setup: func(t *testing.T, dir string) {
				c := mustInit(t, filepath.Join(t.TempDir(), "ca"), hrTD)
				svid, err := c.IssueX509SVID(spiffeid.RequireFromPath(hrTD, "/mcpmesh/node/1"), time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				certPEM, keyPEM, err := svid.Marshal()
				if err != nil {
					t.Fatal(err)
				}
				if err := os.MkdirAll(dir, 0o700); err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(dir, CertFile), certPEM)
				writeFile(t, filepath.Join(dir, KeyFile), keyPEM)
			},
			want: "not a CA certificate",
		},
		{
			name: "CA without SPIFFE URI",
			setup: func(t *testing.T, dir string) {
				certPEM, keyPEM := selfSignedCA(t)
				if err := os.MkdirAll(dir, 0o700); err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(dir, CertFile), certPEM)
				writeFile(t, filepath.Join(dir, KeyFile), keyPEM)
			},
			want: "carries no SPIFFE ID",
		},
		{
			name: "certificate file is not PEM",
			setup: func(t *testing.T, dir string) {
				mustInit(t, dir, hrTD)
				writeFile(t, filepath.Join(dir, CertFile), []byte("not a certificate"))
			},
			want: "no PEM CERTIFICATE block",
		},
		{
			name: "SEC1 key instead of PKCS#8",
			setup: func(t *testing.T, dir string) {
				mustInit(t, dir, hrTD)
				key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				if err != nil {
					t.Fatal(err)
				}
				der, err := x509.MarshalECPrivateKey(key)
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(dir, KeyFile), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
			},
			want: "PKCS#8",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ca")
			tt.setup(t, dir)
			_, err := Load(dir)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), dir) {
				t.Errorf("Load error = %q, want it to name %q and contain %q", err, dir, tt.want)
			}
			if got := errors.Is(err, fs.ErrNotExist); got != tt.notExist {
				t.Errorf("errors.Is(err, fs.ErrNotExist) = %v, want %v", got, tt.notExist)
			}
		})
	}
}

func TestLoadOrInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	first, err := LoadOrInit(dir, hrTD)
	if err != nil {
		t.Fatalf("LoadOrInit on a missing dir: %v", err)
	}
	second, err := LoadOrInit(dir, hrTD)
	if err != nil {
		t.Fatalf("LoadOrInit on an existing CA: %v", err)
	}
	if !second.Bundle().Equal(first.Bundle()) {
		t.Error("second LoadOrInit created a new CA instead of loading the first")
	}

	_, err = LoadOrInit(dir, financeTD)
	if err == nil || !strings.Contains(err.Error(), `trust domain "hr.example.corp", not "finance.example.corp"`) {
		t.Errorf("LoadOrInit with another trust domain: error = %v, want a trust domain mismatch", err)
	}

	// A partial CA is reported, not replaced.
	if err := os.Remove(filepath.Join(dir, KeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrInit(dir, hrTD); err == nil || !strings.Contains(err.Error(), "ca.key not found") {
		t.Errorf("LoadOrInit on a CA without key: error = %v, want ca.key not found", err)
	}
}

// TestLoadOrInitRace has many goroutines race to create the same CA; all
// must end up with one and the same root.
func TestLoadOrInitRace(t *testing.T) {
	const racers = 8
	for round := range 10 {
		parent := t.TempDir()
		dir := filepath.Join(parent, "ca")
		if round%2 == 1 {
			// Half the rounds start from an existing empty directory.
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			roots [racers][]byte
			errs  [racers]error
		)
		for i := range racers {
			wg.Go(func() {
				<-start
				c, err := LoadOrInit(dir, hrTD)
				if err != nil {
					errs[i] = err
					return
				}
				roots[i] = c.Bundle().X509Authorities()[0].Raw
			})
		}
		close(start)
		wg.Wait()
		for i := range racers {
			if errs[i] != nil {
				t.Fatalf("round %d racer %d: %v", round, i, errs[i])
			}
			if !bytes.Equal(roots[i], roots[0]) {
				t.Fatalf("round %d: racer %d got a different root than racer 0", round, i)
			}
		}
		entries, err := os.ReadDir(parent)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			t.Errorf("round %d: parent holds %v, want only the CA dir", round, names)
		}
	}
}

const helperDirEnv = "MCPMESH_CA_TEST_HELPER_DIR"

// TestLoadOrInitProcessRace starts three processes that call LoadOrInit on
// the same directory at once, as three nodes of a dev cluster do.
func TestLoadOrInitProcessRace(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := filepath.Join(t.TempDir(), "ca")
	cmds := make([]*exec.Cmd, 3)
	outs := make([]bytes.Buffer, 3)
	for i := range cmds {
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestLoadOrInitHelperProcess$")
		cmd.Env = append(os.Environ(), helperDirEnv+"="+dir)
		cmd.Stdout = &outs[i]
		cmd.Stderr = &outs[i]
		cmds[i] = cmd
	}
	for _, cmd := range cmds {
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
	}
	var fingerprints []string
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("process %d: %v\n%s", i, err, outs[i].String())
		}
		_, fp, ok := strings.Cut(outs[i].String(), "root=")
		if !ok {
			t.Fatalf("process %d printed no root:\n%s", i, outs[i].String())
		}
		fingerprints = append(fingerprints, fp[:64])
	}
	want := []string{fingerprints[0], fingerprints[0], fingerprints[0]}
	if diff := cmp.Diff(want, fingerprints); diff != "" {
		t.Errorf("processes disagree on the root (-want +got):\n%s", diff)
	}
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(c.Bundle().X509Authorities()[0].Raw)
	if got := hex.EncodeToString(sum[:]); got != fingerprints[0] {
		t.Errorf("CA on disk has root %s, processes reported %s", got, fingerprints[0])
	}
}

// TestLoadOrInitHelperProcess is the body of one process started by
// TestLoadOrInitProcessRace; run directly it does nothing.
func TestLoadOrInitHelperProcess(t *testing.T) {
	dir := os.Getenv(helperDirEnv)
	if dir == "" {
		t.Skip("helper process for TestLoadOrInitProcessRace")
	}
	c, err := LoadOrInit(dir, hrTD)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(c.Bundle().X509Authorities()[0].Raw)
	fmt.Printf("root=%s\n", hex.EncodeToString(sum[:]))
}

func mustInit(t *testing.T, dir string, td spiffeid.TrustDomain, opts ...Option) *CA {
	t.Helper()
	c, err := Init(dir, td, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// selfSignedCA returns a CA certificate without a URI SAN and its key.
func selfSignedCA(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "plain CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}
