package upstream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// An agent of a legacy protocol era (2025-11-25 and before) holds a
// session, and its upstreams talk back over their own: they log, ask the
// client for a sampling, an elicitation or its roots, and notify resource
// updates. None of that can be told apart on a session shared by every
// agent, and none of it may reach another agent. So such an agent gets
// upstream sessions of its own (an Affinity): opened on its first call to
// each upstream, speaking with the agent's capabilities, relaying what the
// upstream sends to that agent alone, and closed with the agent's session.
// They share the upstream's bulkhead and breaker with every other call.
//
// stdio upstreams are the exception: a child process per agent is not
// what their owners run them for, so calls to them take the shared
// session, and an upstream's requests to the client are refused there.

// ErrClosed is returned by an Affinity's calls after Close.
var ErrClosed = errors.New("the agent's session has ended")

// Relay is where an agent's own upstream sessions send what the upstream
// asks of, or tells, the agent. A nil function refuses (requests) or drops
// (notifications) what it would carry.
type Relay struct {
	// Capabilities are the agent's, declared to its upstreams as they are:
	// an upstream asks only for what the agent can give. Nil means none.
	Capabilities *mcp.ClientCapabilities

	Elicit        func(context.Context, *mcp.ElicitParams) (*mcp.ElicitResult, error)
	CreateMessage func(context.Context, *mcp.CreateMessageWithToolsParams) (*mcp.CreateMessageWithToolsResult, error)
	ListRoots     func(context.Context, *mcp.ListRootsParams) (*mcp.ListRootsResult, error)
	Log           func(context.Context, *mcp.LoggingMessageParams)
	// ResourceUpdated also gets the server (Target.Server) whose session
	// the update came on.
	ResourceUpdated func(ctx context.Context, server string, p *mcp.ResourceUpdatedNotificationParams)
}

// Affinity is one agent's own upstream sessions. It is safe for concurrent
// use.
type Affinity struct {
	pool   *Pool
	client *mcp.Client

	mu       sync.Mutex
	sessions map[string]ownSession // by target key
	level    mcp.LoggingLevel
	closed   bool

	// lastLog is when the latest log message was relayed; calls settle on
	// it so that an upstream's logs reach the agent before the result.
	logMu   sync.Mutex
	lastLog time.Time
}

type ownSession struct {
	c *conn
	s *mcp.ClientSession
}

// NewAffinity returns an agent's set of own sessions, relaying to r.
func (p *Pool) NewAffinity(r Relay) *Affinity {
	a := &Affinity{pool: p, sessions: map[string]ownSession{}}
	caps := &mcp.ClientCapabilities{} // not nil: go-sdk would default to declaring roots
	if r.Capabilities != nil {
		caps = r.Capabilities
	}
	opts := &mcp.ClientOptions{
		Logger:                      p.logger,
		Capabilities:                caps,
		ProgressNotificationHandler: p.onProgress,
		MultiRoundTrip:              &mcp.MultiRoundTripOptions{Disabled: true},
	}
	if caps.Sampling != nil && r.CreateMessage != nil {
		opts.CreateMessageWithToolsHandler = func(ctx context.Context, req *mcp.CreateMessageWithToolsRequest) (*mcp.CreateMessageWithToolsResult, error) {
			return r.CreateMessage(ctx, req.Params)
		}
	}
	if r.Log != nil {
		opts.LoggingMessageHandler = func(ctx context.Context, req *mcp.LoggingMessageRequest) {
			a.logMu.Lock()
			a.lastLog = time.Now()
			a.logMu.Unlock()
			r.Log(ctx, req.Params)
		}
	}
	if r.ResourceUpdated != nil {
		opts.ResourceUpdatedHandler = func(ctx context.Context, req *mcp.ResourceUpdatedNotificationRequest) {
			if server, ok := a.serverOf(req.Session); ok {
				r.ResourceUpdated(ctx, server, req.Params)
			}
		}
	}
	a.client = mcp.NewClient(&mcp.Implementation{Name: "mcpmesh", Version: "1"}, opts)
	a.client.AddSendingMiddleware(metaToken)
	// Elicitations and roots requests go to the agent as they came: go-sdk's
	// client would check an elicitation's schema against its own idea of
	// what a form may hold, and answer roots/list from its own list; the
	// agent is the one to judge and to answer.
	elicit := caps.Elicitation != nil && r.Elicit != nil
	roots := (caps.RootsV2 != nil || caps.Roots.ListChanged) && r.ListRoots != nil
	a.client.AddReceivingMiddleware(func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			switch {
			case method == "elicitation/create" && elicit:
				params, _ := req.GetParams().(*mcp.ElicitParams)
				return r.Elicit(ctx, params)
			case method == "roots/list" && roots:
				params, _ := req.GetParams().(*mcp.ListRootsParams)
				return r.ListRoots(ctx, params)
			}
			return next(ctx, method, req)
		}
	})
	return a
}

// source picks the session a call to t uses.
func (a *Affinity) source(t Target) source {
	if t.Transport == TransportStdio {
		return shared{a.pool}
	}
	return a
}

// CallTool is Pool.CallTool on the agent's own session.
func (a *Affinity) CallTool(ctx context.Context, t Target, params *mcp.CallToolParams, onProgress func(*mcp.ProgressNotificationParams)) (*mcp.CallToolResult, error) {
	defer a.settleLogs()
	return a.pool.callTool(ctx, t, a.source(t), params, onProgress)
}

// Call is Pool.Call on the agent's own session.
func (a *Affinity) Call(ctx context.Context, t Target, fn func(context.Context, *mcp.ClientSession) error) error {
	defer a.settleLogs()
	return a.pool.do(ctx, t, a.source(t), fn)
}

// settleLogs waits, when the agent asked for log messages, until the
// upstream's have been quiet for a moment: go-sdk hands a call its result
// while notifications read before it may still wait to be handled.
func (a *Affinity) settleLogs() {
	a.mu.Lock()
	logging := a.level != ""
	a.mu.Unlock()
	if logging {
		settle(&a.logMu, &a.lastLog)
	}
}

// SetLoggingLevel asks every upstream session of the agent, open now or
// later, for log messages at level and above. An upstream that does not
// log refuses; that is not an error of the agent's.
func (a *Affinity) SetLoggingLevel(ctx context.Context, level mcp.LoggingLevel) {
	a.mu.Lock()
	a.level = level
	open := make([]ownSession, 0, len(a.sessions))
	for _, os := range a.sessions {
		open = append(open, os)
	}
	a.mu.Unlock()
	for _, os := range open {
		a.setLevel(ctx, os.s, level)
	}
}

func (a *Affinity) setLevel(ctx context.Context, s *mcp.ClientSession, level mcp.LoggingLevel) {
	ctx, cancel := context.WithTimeout(ctx, a.pool.cfg.CallTimeout)
	defer cancel()
	if err := s.SetLoggingLevel(ctx, &mcp.SetLoggingLevelParams{Level: level}); err != nil {
		a.pool.logger.Debug("upstream did not take the agent's log level", "error", err)
	}
}

func (a *Affinity) session(ctx context.Context, c *conn) (*mcp.ClientSession, error) {
	key := c.target.Key()
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil, ErrClosed
	}
	own, ok := a.sessions[key]
	level := a.level
	a.mu.Unlock()
	if ok && own.c == c {
		return own.s, nil
	}
	if ok { // the upstream's address changed since
		a.drop(own.c, own.s)
	}
	c.mu.Lock()
	s, err := a.pool.dial(ctx, c, a.client, true)
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if level != "" {
		a.setLevel(ctx, s, level)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		s.Close()
		return nil, ErrClosed
	}
	if own, ok := a.sessions[key]; ok && own.c == c {
		// A concurrent call dialled first; keep one session.
		s.Close()
		return own.s, nil
	}
	a.sessions[key] = ownSession{c: c, s: s}
	return s, nil
}

// serverOf returns the server whose upstream s is a session with.
func (a *Affinity) serverOf(s *mcp.ClientSession) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, own := range a.sessions {
		if own.s == s {
			return own.c.target.Server, true
		}
	}
	return "", false
}

func (a *Affinity) drop(c *conn, s *mcp.ClientSession) {
	key := c.target.Key()
	a.mu.Lock()
	own, ok := a.sessions[key]
	if ok && own.s == s {
		delete(a.sessions, key)
	}
	a.mu.Unlock()
	s.Close()
}

// Close closes the agent's upstream sessions; later calls fail with
// ErrClosed.
func (a *Affinity) Close() error {
	a.mu.Lock()
	a.closed = true
	sessions := a.sessions
	a.sessions = map[string]ownSession{}
	a.mu.Unlock()
	var errs []error
	for key, own := range sessions {
		if err := own.s.Close(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
		}
	}
	return errors.Join(errs...)
}
