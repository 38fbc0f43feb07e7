package gateway

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Multi round-trip requests (SEP-2322, the 2026-07-28 era). An upstream
// that needs input from the agent (an elicitation, a sampling, the agent's
// roots) answers tools/call, prompts/get or resources/read with resultType
// "input_required", its input requests and an opaque requestState; the
// agent fulfils the requests and calls again with inputResponses and the
// state. The gateway relays both ways and fulfils nothing itself:
//
//   - the pool's client leaves input requests alone (it would answer them
//     with the node's capabilities, not the agent's), so the result reaches
//     the agent as the upstream gave it;
//   - a retry's inputResponses and requestState reach the upstream as the
//     agent gave them;
//   - the agent's declared capabilities go upstream in the request's _meta,
//     so the upstream asks only for input this agent can give;
//   - an agent of a legacy era gets the same input requests as
//     server-to-client requests on its session: go-sdk's server does that
//     translation and calls the handler again with the answers.
//
// On tools/call the gateway wraps the upstream's requestState with the
// version that asked, so that the retry goes to that version even if a
// newer one went live in between. The wrapping is not a seal: the
// upstream's own state inside is the upstream's to verify, and the version
// outside is one the agent could pin anyway.

// statePrefix marks a requestState the gateway wrapped.
const statePrefix = "mcpmesh1."

// wrappedState is what a wrapped requestState carries.
type wrappedState struct {
	Version string `json:"v"`
	State   string `json:"s,omitempty"`
	// Ask and Confirmed carry the user's confirmation of a call
	// (confirm.go): the digest of the call the gateway asked about, and
	// of the call the user confirmed.
	Ask       string `json:"a,omitempty"`
	Confirmed string `json:"c,omitempty"`
}

// wrapState binds an upstream's requestState to the version that issued it.
func wrapState(version, state string) string {
	return wrappedState{Version: version, State: state}.wrap()
}

// wrap encodes w as a requestState.
func (w wrappedState) wrap() string {
	b, _ := json.Marshal(w)
	return statePrefix + base64.RawURLEncoding.EncodeToString(b)
}

// unwrapState undoes wrapState. A state the gateway did not issue, or one
// altered on the way, is refused with -32602.
func unwrapState(s string) (wrappedState, error) {
	invalid := &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams,
		Message: "requestState was not issued by this gateway or was altered; send back the requestState of the input_required result unchanged, or call again without one"}
	rest, ok := strings.CutPrefix(s, statePrefix)
	if !ok {
		return wrappedState{}, invalid
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		return wrappedState{}, invalid
	}
	var w wrappedState
	if err := json.Unmarshal(b, &w); err != nil || w.Version == "" {
		return wrappedState{}, invalid
	}
	return w, nil
}

// versionOfCall returns the version a tools/call asks for: its pin, or the
// version its requestState was issued by; both at once must agree.
func versionOfCall(p *mcp.CallToolParamsRaw) (version string, upstreamState string, err error) {
	pin := pinOf(p.Meta)
	if p.RequestState == "" {
		return pin, "", nil
	}
	w, err := unwrapState(p.RequestState)
	if err != nil {
		return "", "", err
	}
	if pin != "" && pin != w.Version {
		return "", "", &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams,
			Message: fmt.Sprintf("_meta[%q] pins %s but requestState belongs to version %s; a retry goes to the version that asked for input", MetaVersion, pin, w.Version)}
	}
	return w.Version, w.State, nil
}

// forwardMeta is the _meta of a request the gateway sends upstream for an
// agent's request: the agent's capabilities and nothing else of what the
// agent sent (no identity, token or progress token crosses). A 2026-07-28
// agent declares them on the request; a legacy agent's come from its
// session's initialize.
func forwardMeta(meta mcp.Meta, ss *mcp.ServerSession) mcp.Meta {
	if caps, ok := meta[mcp.MetaKeyClientCapabilities]; ok {
		return mcp.Meta{mcp.MetaKeyClientCapabilities: caps}
	}
	if ss == nil || ss.InitializeParams() == nil || ss.InitializeParams().Capabilities == nil {
		return nil
	}
	caps := ss.InitializeParams().Capabilities
	// On the wire (as a 2026 _meta value) roots is present only when the
	// agent declared it; go-sdk's v1 struct always writes it.
	b, err := json.Marshal(caps)
	if err != nil {
		return nil
	}
	var m map[string]any
	if json.Unmarshal(b, &m) != nil {
		return nil
	}
	if caps.RootsV2 == nil && !caps.Roots.ListChanged {
		delete(m, "roots")
	}
	return mcp.Meta{mcp.MetaKeyClientCapabilities: m}
}

// session returns the agent's session behind a request, nil if none.
func session(req mcp.Request) *mcp.ServerSession {
	ss, _ := req.GetSession().(*mcp.ServerSession)
	return ss
}
