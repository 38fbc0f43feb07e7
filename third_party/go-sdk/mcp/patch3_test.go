// mcpmesh patch 3 tests (see PATCHES.md): a stateless request's call is
// handled on the HTTP request's goroutine, a client reads a call's response
// on the caller's goroutine, and a handler that panics on the inline path
// still settles its request.

package mcp

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// goid is the current goroutine's id, read from its stack header.
func goid() int64 {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	buf = bytes.TrimPrefix(buf, []byte("goroutine "))
	n, _ := strconv.ParseInt(string(buf[:bytes.IndexByte(buf, ' ')]), 10, 64)
	return n
}

type patchEchoArgs struct {
	Text string `json:"text"`
}

// patchServer is a stateless server with an echo tool that notes the
// goroutine it ran on, and a tool that panics.
func patchServer(t *testing.T, ranOn *atomic.Int64) *httptest.Server {
	t.Helper()
	s := NewServer(&Implementation{Name: "patch3", Version: "v0"}, nil)
	AddTool(s, &Tool{Name: "echo"}, func(ctx context.Context, _ *CallToolRequest, a patchEchoArgs) (*CallToolResult, any, error) {
		ranOn.Store(goid())
		return &CallToolResult{Content: []Content{&TextContent{Text: a.Text}}}, nil, nil
	})
	AddTool(s, &Tool{Name: "boom"}, func(context.Context, *CallToolRequest, patchEchoArgs) (*CallToolResult, any, error) {
		panic("boom")
	})
	return httptest.NewServer(NewStreamableHTTPHandler(func(*http.Request) *Server { return s }, &StreamableHTTPOptions{Stateless: true}))
}

func TestPatchedStatelessCallOnTheRequestGoroutine(t *testing.T) {
	var ranOn, servedOn atomic.Int64
	srv := patchServer(t, &ranOn)
	defer srv.Close()
	inner := srv.Config.Handler
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		servedOn.Store(goid())
		inner.ServeHTTP(w, r)
	})

	var readOn atomic.Int64
	hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err == nil {
			resp.Body = &notingBody{ReadCloser: resp.Body, on: &readOn}
		}
		return resp, err
	})}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := NewClient(&Implementation{Name: "patch3-client", Version: "v0"}, nil)
	cs, err := c.Connect(ctx, &StreamableClientTransport{Endpoint: srv.URL, HTTPClient: hc}, &ClientSessionOptions{ProtocolVersion: protocolVersion20260728})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()

	for i := range 3 {
		readOn.Store(0)
		res, err := cs.CallTool(ctx, &CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hi"}})
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if tc, ok := res.Content[0].(*TextContent); !ok || tc.Text != "hi" {
			t.Fatalf("call %d: echo answered %+v", i, res.Content)
		}
		if ranOn.Load() != servedOn.Load() {
			t.Errorf("call %d: the tool ran on goroutine %d, the HTTP request was served on %d: not handled inline", i, ranOn.Load(), servedOn.Load())
		}
		if me := goid(); readOn.Load() != me {
			t.Errorf("call %d: the response body was read on goroutine %d, the caller is %d: not read inline", i, readOn.Load(), me)
		}
	}
}

func TestPatchedStatelessPanicSettlesTheRequest(t *testing.T) {
	var ranOn atomic.Int64
	srv := patchServer(t, &ranOn)
	srv.Config.ErrorLog = nil
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := NewClient(&Implementation{Name: "patch3-client", Version: "v0"}, nil)
	cs, err := c.Connect(ctx, &StreamableClientTransport{Endpoint: srv.URL}, &ClientSessionOptions{ProtocolVersion: protocolVersion20260728})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()

	if res, err := cs.CallTool(ctx, &CallToolParams{Name: "boom", Arguments: map[string]any{"text": "x"}}); err == nil && !res.IsError {
		t.Fatalf("a panicking tool answered %+v, want an error", res)
	}
	if ctx.Err() != nil {
		t.Fatal("the call of a panicking tool was not answered before the test's deadline")
	}
	if _, err := cs.CallTool(ctx, &CallToolParams{Name: "echo", Arguments: map[string]any{"text": "after"}}); err != nil {
		t.Fatalf("a call after the panic: %v", err)
	}
	// Had the panicking request stayed in flight, its session's Close (run
	// as the HTTP handler unwinds) would wait for it forever, and so would
	// the server's Close.
	closed := make(chan struct{})
	go func() { srv.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		buf := make([]byte, 1<<16)
		t.Fatalf("the server did not close in 10s: a request is still in flight\n%s", buf[:runtime.Stack(buf, true)])
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// notingBody notes the goroutine that read a response body.
type notingBody struct {
	io.ReadCloser
	on *atomic.Int64
}

func (b *notingBody) Read(p []byte) (int, error) {
	b.on.Store(goid())
	return b.ReadCloser.Read(p)
}
