package ca

import (
	"crypto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestWriteLoadSVID(t *testing.T) {
	c := mustInit(t, filepath.Join(t.TempDir(), "ca"), hrTD)
	dir := filepath.Join(t.TempDir(), "admin")
	id := spiffeid.RequireFromPath(hrTD, "/admin/alice")

	for i := range 2 { // the second round overwrites the first SVID
		svid, err := c.IssueX509SVID(id, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteSVID(dir, svid, c.Bundle()); err != nil {
			t.Fatalf("round %d: WriteSVID: %v", i, err)
		}
		gotSVID, gotBundle, err := LoadSVID(dir)
		if err != nil {
			t.Fatalf("round %d: LoadSVID: %v", i, err)
		}
		if gotSVID.ID != id {
			t.Errorf("round %d: ID = %v, want %v", i, gotSVID.ID, id)
		}
		if !gotSVID.Certificates[0].Equal(svid.Certificates[0]) {
			t.Errorf("round %d: loaded certificate is not the one written", i)
		}
		if !gotSVID.PrivateKey.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(svid.PrivateKey.Public()) {
			t.Errorf("round %d: loaded key is not the one written", i)
		}
		if !gotBundle.Equal(c.Bundle()) {
			t.Errorf("round %d: loaded bundle is not the CA's", i)
		}
	}

	modes := map[string]os.FileMode{}
	for _, name := range []string{SVIDCertFile, SVIDKeyFile, BundleFile} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		modes[name] = fi.Mode().Perm()
	}
	want := map[string]os.FileMode{SVIDCertFile: 0o644, SVIDKeyFile: 0o600, BundleFile: 0o644}
	if diff := cmp.Diff(want, modes); diff != "" {
		t.Errorf("file modes (-want +got):\n%s", diff)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		t.Errorf("SVID dir holds %d entries, want 3 (no temporary leftovers)", len(entries))
	}
}

func TestWriteSVIDErrors(t *testing.T) {
	hr := mustInit(t, filepath.Join(t.TempDir(), "hr"), hrTD)
	finance := mustInit(t, filepath.Join(t.TempDir(), "finance"), financeTD)
	svid, err := hr.IssueX509SVID(spiffeid.RequireFromPath(hrTD, "/agent/x"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	err = WriteSVID(t.TempDir(), svid, finance.Bundle())
	if err == nil || !strings.Contains(err.Error(), `bundle is for trust domain "finance.example.corp"`) {
		t.Errorf("WriteSVID with a foreign bundle: error = %v, want a trust domain mismatch", err)
	}
}

func TestLoadSVIDErrors(t *testing.T) {
	c := mustInit(t, filepath.Join(t.TempDir(), "ca"), hrTD)
	other := mustInit(t, filepath.Join(t.TempDir(), "other"), hrTD)
	svid, err := c.IssueX509SVID(spiffeid.RequireFromPath(hrTD, "/agent/x"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  string
	}{
		{"missing directory", func(t *testing.T, dir string) {}, "svid.crt"},
		{"bundle of another CA", func(t *testing.T, dir string) {
			if err := WriteSVID(dir, svid, other.Bundle()); err != nil {
				t.Fatal(err)
			}
		}, "was not issued by any authority in bundle.crt"},
		{"empty bundle", func(t *testing.T, dir string) {
			if err := WriteSVID(dir, svid, c.Bundle()); err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(dir, BundleFile), nil)
		}, "bundle.crt holds no certificates"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "svid")
			tt.setup(t, dir)
			_, _, err := LoadSVID(dir)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), dir) {
				t.Errorf("LoadSVID error = %v, want it to name %s and contain %q", err, dir, tt.want)
			}
		})
	}
}
