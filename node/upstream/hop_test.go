package upstream

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func TestParseTimeout(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1", time.Millisecond, true},
		{"2500", 2500 * time.Millisecond, true},
		{"007", 7 * time.Millisecond, true},
		{"999999999", 999999999 * time.Millisecond, true},
		{"", 0, false},
		{"0", 0, false},
		{"000", 0, false},
		{"-5", 0, false},
		{"+5", 0, false},
		{" 5", 0, false},
		{"5s", 0, false},
		{"1.5", 0, false},
		{"1000000000", 0, false}, // 10 digits
		{"99999999999999999999", 0, false},
		{"٣", 0, false}, // a digit, but not ASCII
	} {
		got, err := ParseTimeout(tc.in)
		if tc.ok && (err != nil || got != tc.want) {
			t.Errorf("ParseTimeout(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if !tc.ok && (err == nil || !errors.Is(err, ErrTimeoutHeader)) {
			t.Errorf("ParseTimeout(%q) = %v, %v; want ErrTimeoutHeader", tc.in, got, err)
		}
	}
}

func TestFormatTimeout(t *testing.T) {
	for _, tc := range []struct {
		in   time.Duration
		want string
	}{
		{1500*time.Millisecond + 999*time.Microsecond, "1500"}, // rounded down
		{time.Microsecond, "1"},                                // past or nearly: at least 1
		{-time.Second, "1"},
		{30 * 24 * time.Hour, "999999999"}, // capped
	} {
		if got := FormatTimeout(tc.in); got != tc.want {
			t.Errorf("FormatTimeout(%v) = %q; want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzParseTimeout: whatever another BU or an agent sends, ParseTimeout
// accepts only a positive bound it can format back, and never panics.
func FuzzParseTimeout(f *testing.F) {
	for _, s := range []string{"1", "2500", "007", "999999999", "", "0", "-1", "1e3", "5s", " 1", "18446744073709551616"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseTimeout(s)
		if err != nil {
			return
		}
		if d <= 0 || d > 999999999*time.Millisecond {
			t.Fatalf("ParseTimeout(%q) = %v, out of bounds", s, d)
		}
		if back, err := ParseTimeout(FormatTimeout(d)); err != nil || back != d {
			t.Fatalf("ParseTimeout(FormatTimeout(%v)) = %v, %v", d, back, err)
		}
		if n, _ := strconv.ParseInt(strings.TrimLeft(s, "0"), 10, 64); time.Duration(n)*time.Millisecond != d {
			t.Fatalf("ParseTimeout(%q) = %v", s, d)
		}
	})
}

// TestCallCarriesTraceAndDeadline: an upstream gets the call's traceparent
// and tracestate, unchanged, in _meta and the headers, and the time its
// caller has left; a
// call past its caller's deadline does not count against the upstream.
func TestCallCarriesTraceAndDeadline(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	const ts = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
	type seen struct{ meta, header, timeout, metaState, headerState string }
	got := make(chan seen, 8)
	// release ends a held call the upstream never saw cancelled (a
	// stateless go-sdk server does not propagate it by default).
	release := make(chan struct{})
	defer close(release)
	url := httpUpstream(t, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		s := seen{}
		s.meta, _ = req.Params.Meta[MetaTraceparent].(string)
		s.header, s.timeout = req.Extra.Header.Get("Traceparent"), req.Extra.Header.Get(TimeoutHeader)
		s.metaState, _ = req.Params.Meta[MetaTracestate].(string)
		s.headerState = req.Extra.Header.Get("Tracestate")
		got <- s
		if _, hold := req.Params.Meta["hold"]; hold {
			select {
			case <-ctx.Done():
			case <-release:
			}
			return nil, errors.New("released")
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok"}}}, nil
	})
	p := NewPool(Config{CallTimeout: 20 * time.Second, BreakerThreshold: 1})
	defer p.Close()
	target := Target{Server: "corp.test/t", Version: "1.0.0", Transport: TransportStreamableHTTP, URL: url}

	ctx, cancel := context.WithTimeout(ContextWithTrace(t.Context(), tp, ts), 3*time.Second)
	defer cancel()
	meta := mcp.Meta{"other": "kept"}
	if _, err := p.CallTool(ctx, target, &mcp.CallToolParams{Name: "t", Meta: meta}, nil); err != nil {
		t.Fatal(err)
	}
	s := <-got
	if s.meta != tp || s.header != tp {
		t.Errorf("the upstream got traceparent %q in _meta, %q in its header; want %q", s.meta, s.header, tp)
	}
	if s.metaState != ts || s.headerState != ts {
		t.Errorf("the upstream got tracestate %q in _meta, %q in its header; want %q", s.metaState, s.headerState, ts)
	}
	if ms, err := strconv.Atoi(s.timeout); err != nil || ms <= 0 || ms > 3000 {
		t.Errorf("the upstream got %s %q; want at most the caller's 3000 ms", TimeoutHeader, s.timeout)
	}
	if _, ok := meta[MetaTraceparent]; ok {
		t.Errorf("the caller's _meta map was changed: %v", meta)
	}

	// Without a trace and with only the pool's own timeout.
	if _, err := p.CallTool(t.Context(), target, &mcp.CallToolParams{Name: "t"}, nil); err != nil {
		t.Fatal(err)
	}
	s = <-got
	if s.meta != "" || s.header != "" || s.metaState != "" || s.headerState != "" {
		t.Errorf("a call without a trace sent %q, %q, %q, %q", s.meta, s.header, s.metaState, s.headerState)
	}

	// A tracestate over the specification's bounds is dropped whole; the
	// traceparent still goes, and no stale tracestate of the request's.
	long := ContextWithTrace(t.Context(), tp, "a="+strings.Repeat("x", 256)+",b="+strings.Repeat("y", 256))
	if _, err := p.CallTool(long, target, &mcp.CallToolParams{Name: "t", Meta: mcp.Meta{MetaTracestate: "stale=1"}}, nil); err != nil {
		t.Fatal(err)
	}
	if s = <-got; s.meta != tp || s.metaState != "" || s.headerState != "" {
		t.Errorf("an over-long tracestate: the upstream got %+v; want the traceparent alone", s)
	}
	if ms, err := strconv.Atoi(s.timeout); err != nil || ms <= 3000 || ms > 20000 {
		t.Errorf("the upstream got %s %q; want the pool's own bound, at most 20000 ms", TimeoutHeader, s.timeout)
	}

	// The caller's own short deadline passes: the upstream is not to blame.
	short, cancelShort := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancelShort()
	_, err := p.CallTool(short, target, &mcp.CallToolParams{Name: "t", Meta: mcp.Meta{"hold": true}}, nil)
	// Which the pool sees first, the caller's end or its own copy of the
	// deadline, is a race; neither is the upstream's fault.
	if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		t.Fatalf("held call = %v; want it ended by its caller's deadline", err)
	}
	<-got
	for _, h := range p.Health() {
		if h.Failures != 0 || h.Open {
			t.Errorf("a call past its caller's deadline counted against the upstream: %+v", h)
		}
	}
}
