package dev

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/registry/card"
)

// runDev starts a dev mesh and returns dev.json once written, and a stop
// function that waits for a clean exit.
func runDev(t *testing.T, dir string, base int) (Info, func()) {
	t.Helper()
	os.Remove(filepath.Join(dir, "dev.json"))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	var out bytes.Buffer
	go func() {
		done <- Run(ctx, Config{DataDir: dir, BasePort: base}, &out, slog.New(slog.DiscardHandler))
	}()
	deadline := time.Now().Add(30 * time.Second)
	var info Info
	for {
		raw, err := os.ReadFile(filepath.Join(dir, "dev.json"))
		if err == nil && json.Unmarshal(raw, &info) == nil {
			break
		}
		select {
		case err := <-done:
			cancel()
			t.Fatalf("dev exited before writing dev.json: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("dev.json not written within 30s (last read error: %v)", err)
		}
	}
	return info, func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("dev did not stop cleanly: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("dev did not stop within 20s")
		}
	}
}

func TestDevSeedsAndResumes(t *testing.T) {
	dir := t.TempDir()
	base := 20000 + rand.IntN(20000)
	info, stop := runDev(t, dir, base)
	if len(info.Namespaces) != 2 {
		t.Fatalf("namespaces = %v, want hr and finance", info.Namespaces)
	}
	fin := info.Namespaces["finance"]
	if fin.TrustDomain != "finance.example.corp" || len(fin.Servers) != 2 {
		t.Errorf("finance = %+v", fin)
	}
	tok, _ := os.ReadFile(fin.TokenFile)
	if strings.TrimSpace(string(tok)) != fin.Token || len(fin.Token) < 32 {
		t.Errorf("token file does not hold the dev token")
	}
	c, err := api.NewClient(api.ClientConfig{Addr: fin.AdminURL, Token: fin.Token})
	if err != nil {
		t.Fatal(err)
	}
	rows, err := c.ListServers(t.Context(), "", false)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 {
		t.Fatalf("finance lists %d versions, want 2: %+v", len(rows), rows)
	}
	for _, r := range rows {
		if r.State != card.StateApproved {
			t.Errorf("%s@%s is %s, want approved", r.Server, r.Version, r.State)
		}
	}
	// Tokens are per BU: hr's token does not open finance.
	other, _ := api.NewClient(api.ClientConfig{Addr: fin.AdminURL, Token: info.Namespaces["hr"].Token})
	if _, err := other.ListServers(t.Context(), "", false); err == nil {
		t.Error("hr's dev token was accepted by finance's node")
	}
	stop()

	// A second run on the same data dir resumes: same token, same state,
	// nothing approved twice.
	info2, stop2 := runDev(t, dir, base)
	defer stop2()
	if info2.Namespaces["finance"].Token != fin.Token {
		t.Error("token changed across restarts")
	}
	c, _ = api.NewClient(api.ClientConfig{Addr: fin.AdminURL, Token: fin.Token})
	vs, err := c.ServerVersions(t.Context(), "corp.finance/ledger", true)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		if v.State != card.StateApproved || len(v.History) != 2 {
			t.Errorf("%s@%s after restart: %s with %d history entries, want approved with 2", v.Server, v.Version, v.State, len(v.History))
		}
	}
}
