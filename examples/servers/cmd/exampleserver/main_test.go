package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mcpmesh/mcpmesh/examples/servers"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    config
		wantErr bool
	}{
		{"defaults", nil, config{server: servers.DirectoryName, version: "1.0.0", stateless: true, issuer: "spiffe://hr.example.corp/mcpmesh/gateway"}, false},
		{"ledger v2 by hand", []string{"-server", "ledger", "-version", "2.0.0", "-listen", "127.0.0.1:9400", "-stateless=false", "-jwks-url", "http://127.0.0.1:7101/.well-known/mcpmesh/jwks.json"},
			config{server: servers.LedgerName, version: "2.0.0", listen: "127.0.0.1:9400", stateless: false, jwksURL: "http://127.0.0.1:7101/.well-known/mcpmesh/jwks.json", issuer: "spiffe://finance.example.corp/mcpmesh/gateway"}, false},
		{"full name, stdio, own issuer", []string{"-server", "corp.finance/ledger", "-stdio", "-issuer", "spiffe://fin.corp/mcpmesh/gateway"},
			config{server: servers.LedgerName, version: "1.0.0", stateless: true, stdio: true, issuer: "spiffe://fin.corp/mcpmesh/gateway"}, false},
		{"unknown server", []string{"-server", "payroll"}, config{}, true},
		{"stray argument", []string{"ledger"}, config{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseFlags(tt.args, io.Discard)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseFlags = %v, want error %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(config{})); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRunServesUntilCancelled runs the ledger on a free loopback port,
// lists its tools with the go-sdk client, and stops it.
func TestRunServesUntilCancelled(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	cfg := config{server: servers.LedgerName, version: "2.0.0", listen: addr, stateless: true}
	go func() { done <- run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil))) }()

	c := mcp.NewClient(&mcp.Implementation{Name: "main-test", Version: "0.0.1"}, nil)
	var cs *mcp.ClientSession
	deadline := time.Now().Add(10 * time.Second)
	for {
		cs, err = c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: "http://" + addr + "/mcp"}, nil)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no server at %s/mcp within 10s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	res, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Tools) != 3 {
		t.Errorf("ledger 2.0.0 lists %d tools, want 3", len(res.Tools))
	}
	cs.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run = %v, want nil after cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return within 10s of cancel")
	}
}
