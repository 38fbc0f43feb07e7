package upstream

import (
	"errors"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// go-sdk reports some local conditions as JSON-RPC errors of its own: the
// transport refused to send (-32005), or the client or server is closing
// (-32003, -32004). They say nothing about what the upstream answered.
const (
	codeClientClosing = -32003
	codeServerClosing = -32004
	codeRejected      = -32005
)

// Answered returns the JSON-RPC error the upstream itself answered with.
// It reports false for transport failures (connection refused, timeouts,
// go-sdk's local errors), which are the upstream's health problem, not an
// answer to pass on.
func Answered(err error) (*jsonrpc.Error, bool) {
	var je *jsonrpc.Error
	if !errors.As(err, &je) {
		return nil, false
	}
	switch je.Code {
	case codeClientClosing, codeServerClosing, codeRejected:
		return nil, false
	}
	return je, true
}

// versionRejected reports whether an upstream turned a request down for
// its protocol version: a stateful (legacy) go-sdk server answers requests
// of the 2026-07-28 era with HTTP 400 before handling them. go-sdk gives no
// typed error for it, so this matches its messages (checked against
// go-sdk v1.8.0; the gateway tests against a stateful upstream catch a
// change).
func versionRejected(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "is not supported by this server") ||
		strings.Contains(msg, "only supported on stateless HTTP servers") ||
		strings.Contains(msg, "this server is stateful")
}
