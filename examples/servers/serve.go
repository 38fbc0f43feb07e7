package servers

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// sessionTimeout closes legacy sessions a client abandoned without a DELETE.
const sessionTimeout = 10 * time.Minute

// New returns the example server with the card name and version, such as
// New(LedgerName, "2.0.0"), so callers can start one server per example card.
// The error wraps ErrUnknownServer when there is no such example.
func New(name, version string, opts ...Option) (*mcp.Server, error) {
	switch {
	case name == DirectoryName && version == "1.0.0":
		return NewDirectory(opts...), nil
	case name == LedgerName:
		return NewLedger(version, opts...)
	}
	return nil, fmt.Errorf("%w %s@%s; the examples are %s", ErrUnknownServer, name, version, knownServers())
}

// Handler serves s over Streamable HTTP at any path; mount it where the
// card's upstream URL points (/mcp).
//
// With stateless true it serves in the style of the 2026-07-28 revision
// (go-sdk StreamableHTTPOptions{Stateless: true}): no Mcp-Session-Id, POST
// only, every request on its own, and a call is cancelled when its HTTP
// request ends. Clients of 2025-11-25 and 2025-06-18 are answered too,
// without a session, and their calls are cancelled the same way (their
// notifications/cancelled arrives in another request, which cannot reach the
// call). With stateless false it keeps legacy sessions (2025-11-25 /
// 2025-06-18: initialize, Mcp-Session-Id, GET stream, notifications/cancelled);
// a 2026-07-28 client is told to fall back. Sessions idle for 10 minutes are
// closed.
//
// Every handler of s shares s's state: all sessions see one ledger.
func Handler(s *mcp.Server, stateless bool) http.Handler {
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{
		Stateless:                    stateless,
		SessionTimeout:               sessionTimeout,
		PropagateRequestCancellation: true,
	})
	if !stateless {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), carrierKey{}, r.Context())))
	})
}

// carrierKey marks the context of a stateless HTTP request: its value is the
// request's own context, which the go-sdk keeps as a value of the tool
// handler's context but whose cancellation it does not pass on for legacy
// (pre-2026-07-28) requests (PropagateRequestCancellation covers only the
// new revision). Without it a legacy client's cancelled call would run to
// its end, and the go-sdk's stateless ServeHTTP waits for it.
type carrierKey struct{}

// withCarrier returns ctx cancelled also when the HTTP request carrying a
// stateless call ends, and a function releasing it.
func withCarrier(ctx context.Context) (context.Context, context.CancelFunc) {
	carrier, ok := ctx.Value(carrierKey{}).(context.Context)
	if !ok {
		return ctx, func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(carrier, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}
