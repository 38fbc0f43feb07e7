package gateway

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/node/upstream"
)

// An agent of a legacy era (a session opened by initialize with a revision
// before 2026-07-28) reaches its upstreams through sessions of its own
// (upstream.Affinity), so that what an upstream sends back on them (log
// messages, sampling, elicitation and roots requests, resource updates)
// goes to that agent and no other. A 2026-07-28 agent needs none of this:
// its requests carry everything, input requests come back in results
// (mrtr.go), and the pool's shared sessions serve it.

// caller is what an upstream call goes through: the pool, or an agent's
// own sessions.
type caller interface {
	CallTool(ctx context.Context, t upstream.Target, params *mcp.CallToolParams, onProgress func(*mcp.ProgressNotificationParams)) (*mcp.CallToolResult, error)
	Call(ctx context.Context, t upstream.Target, fn func(context.Context, *mcp.ClientSession) error) error
}

// agentLink ties one legacy agent session to its upstream sessions.
type agentLink struct {
	ss  *mcp.ServerSession
	aff *upstream.Affinity

	mu sync.Mutex
	// calls are the contexts of the agent's requests being served now, in
	// arrival order. What an upstream sends the agent goes out under the
	// newest, so that go-sdk writes it on that request's response stream
	// (where the agent expects it) rather than only on the session's
	// standalone stream, which the agent may not have opened.
	calls []*context.Context
}

// legacySession reports whether ss is a legacy-era agent session.
func legacySession(ss *mcp.ServerSession) bool {
	if ss == nil || ss.ID() == "" {
		return false
	}
	ip := ss.InitializeParams()
	return ip != nil && ip.ProtocolVersion != "" && ip.ProtocolVersion < modernVersion
}

// callerFor returns what a request of ss to its upstreams goes through,
// and a function to call when the request is done.
func (g *Gateway) callerFor(ctx context.Context, ep *endpoint, ss *mcp.ServerSession) (caller, func()) {
	l := g.link(ep, ss)
	if l == nil {
		return g.pool, func() {}
	}
	return l.aff, l.enter(ctx)
}

// link returns the agent link of ss, made on first use; nil for sessions
// that need none.
func (g *Gateway) link(ep *endpoint, ss *mcp.ServerSession) *agentLink {
	if !legacySession(ss) {
		return nil
	}
	if l, ok := g.links.Load(ss); ok {
		return l.(*agentLink)
	}
	l := &agentLink{ss: ss}
	var caps *mcp.ClientCapabilities
	if ip := ss.InitializeParams(); ip != nil {
		caps = ip.Capabilities
	}
	l.aff = g.pool.NewAffinity(upstream.Relay{
		Capabilities: caps,
		Elicit: func(ctx context.Context, p *mcp.ElicitParams) (*mcp.ElicitResult, error) {
			return askAgent(l, ctx, func(ctx context.Context) (*mcp.ElicitResult, error) { return ss.Elicit(ctx, p) })
		},
		CreateMessage: func(ctx context.Context, p *mcp.CreateMessageWithToolsParams) (*mcp.CreateMessageWithToolsResult, error) {
			return askAgent(l, ctx, func(ctx context.Context) (*mcp.CreateMessageWithToolsResult, error) {
				return ss.CreateMessageWithTools(ctx, p)
			})
		},
		ListRoots: func(ctx context.Context, p *mcp.ListRootsParams) (*mcp.ListRootsResult, error) {
			return askAgent(l, ctx, func(ctx context.Context) (*mcp.ListRootsResult, error) { return ss.ListRoots(ctx, p) })
		},
		Log: func(ctx context.Context, p *mcp.LoggingMessageParams) {
			ctx, done := l.agentContext(ctx)
			defer done()
			// go-sdk filters by the level the agent set on its session.
			ss.Log(ctx, p)
		},
		ResourceUpdated: func(ctx context.Context, server string, p *mcp.ResourceUpdatedNotificationParams) {
			if ep == g.agg {
				mapped := *p
				mapped.URI = g.aggregatedURI(server, p.URI)
				p = &mapped
			}
			ep.resourceUpdated(ss, p)
		},
	})
	if prev, loaded := g.links.LoadOrStore(ss, l); loaded {
		l.aff.Close()
		return prev.(*agentLink)
	}
	g.bg.Add(1)
	go func() {
		defer g.bg.Done()
		ss.Wait()
		g.links.Delete(ss)
		l.aff.Close()
	}()
	return l
}

// enter records ctx as a request of the agent being served, until the
// returned function is called.
func (l *agentLink) enter(ctx context.Context) func() {
	p := &ctx
	l.mu.Lock()
	l.calls = append(l.calls, p)
	l.mu.Unlock()
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		for i, c := range l.calls {
			if c == p {
				l.calls = append(l.calls[:i], l.calls[i+1:]...)
				return
			}
		}
	}
}

// agentContext returns the context to send something to the agent under:
// that of the newest request of the agent's being served (see calls), so
// that go-sdk sends it on that request's stream, ended when upstreamCtx,
// the upstream's side of it, ends; or, with no request being served, a
// bounded background context (go-sdk then uses the session's standalone
// stream).
//
// Only the upstream's side ends it: the agent's request it is routed by
// may be another of the agent's concurrent calls than the one the
// upstream asks for (the upstream's message does not say which), and
// that call ending must not cancel a question still waiting for the
// agent's answer.
func (l *agentLink) agentContext(upstreamCtx context.Context) (context.Context, context.CancelFunc) {
	l.mu.Lock()
	var base context.Context
	if n := len(l.calls); n > 0 {
		base = *l.calls[n-1]
	}
	l.mu.Unlock()
	if base == nil {
		return context.WithTimeout(context.Background(), 30*time.Second)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(base))
	stop := context.AfterFunc(upstreamCtx, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// askAgent sends the agent a request of its upstream's with ask, under
// agentContext. go-sdk refuses to write on the stream of a request it has
// answered ("write to closed stream"); when the request ask was routed by
// ended between agentContext and the write, it asks again under the
// agent's next request being served, or its standalone stream.
func askAgent[R any](l *agentLink, upstreamCtx context.Context, ask func(context.Context) (R, error)) (R, error) {
	for attempt := 1; ; attempt++ {
		ctx, done := l.agentContext(upstreamCtx)
		r, err := ask(ctx)
		done()
		if err == nil || attempt == 3 || upstreamCtx.Err() != nil || !strings.Contains(err.Error(), "write to closed stream") {
			return r, err
		}
	}
}

// loggingLevel passes a legacy agent's logging/setLevel, on any endpoint,
// on to the agent's own upstream sessions as well as to its session here.
func (g *Gateway) loggingLevel(ep *endpoint) mcp.Middleware {
	return func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			res, err := next(ctx, method, req)
			if method != "logging/setLevel" || err != nil {
				return res, err
			}
			if l := g.link(ep, session(req)); l != nil {
				if p, ok := req.GetParams().(*mcp.SetLoggingLevelParams); ok && p != nil {
					l.aff.SetLoggingLevel(ctx, p.Level)
				}
			}
			return res, err
		}
	}
}

// subscribe and unsubscribe forward a legacy agent's resource
// subscriptions to the agent's own session with the upstream that resolve
// names for the URI (with the URI the upstream knows).
func (g *Gateway) subscribe(ep *endpoint, resolve func(uri string) (upstream.Target, string, error)) (sub func(context.Context, *mcp.SubscribeRequest) error, unsub func(context.Context, *mcp.UnsubscribeRequest) error) {
	forward := func(ctx context.Context, ss *mcp.ServerSession, uri string, fn func(context.Context, *mcp.ClientSession, string) error) error {
		t, original, err := resolve(uri)
		if err != nil {
			return err
		}
		l := g.link(ep, ss)
		if l == nil {
			return &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: "resources/subscribe needs a session of revision 2025-11-25 or earlier; in 2026-07-28 use subscriptions/listen"}
		}
		defer l.enter(ctx)()
		_, err = g.callUpstreamResult(ctx, l.aff, t, func(ctx context.Context, s *mcp.ClientSession) (mcp.Result, error) {
			return nil, fn(ctx, s, original)
		})
		return err
	}
	sub = func(ctx context.Context, req *mcp.SubscribeRequest) error {
		if !legacySession(req.Session) { // a 2026-07-28 agent's subscriptions/listen (listen.go)
			return g.listenSubscribe(ctx, ep, req.Session, req.Params.URI, resolve)
		}
		return forward(ctx, req.Session, req.Params.URI, func(ctx context.Context, s *mcp.ClientSession, uri string) error {
			return s.Subscribe(ctx, &mcp.SubscribeParams{URI: uri})
		})
	}
	unsub = func(ctx context.Context, req *mcp.UnsubscribeRequest) error {
		if !legacySession(req.Session) {
			g.listenUnsubscribe(ep, req.Session, req.Params.URI)
			return nil
		}
		return forward(ctx, req.Session, req.Params.URI, func(ctx context.Context, s *mcp.ClientSession, uri string) error {
			return s.Unsubscribe(ctx, &mcp.UnsubscribeParams{URI: uri})
		})
	}
	return sub, unsub
}

// resourceUpdated tells ss, and only ss, that a resource it subscribed to
// changed. go-sdk sends resource updates only through
// Server.ResourceUpdated, to every session subscribed to the URI; but each
// agent's update comes from its own upstream session, so the others would
// get it once per subscriber. The endpoint's sending middleware
// (onlyTo) lets the update reach ss alone; updates are serialized for it.
func (ep *endpoint) resourceUpdated(ss *mcp.ServerSession, p *mcp.ResourceUpdatedNotificationParams) {
	ep.notifyMu.Lock()
	defer ep.notifyMu.Unlock()
	ep.onlyTo.Store(ss)
	defer ep.onlyTo.Store(nil)
	ep.server.ResourceUpdated(context.Background(), p)
}

// onlyToMiddleware is the endpoint's sending middleware for resourceUpdated.
func (ep *endpoint) onlyToMiddleware(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		if method == "notifications/resources/updated" {
			if only := ep.onlyTo.Load(); only != nil && req.GetSession() != mcp.Session(only) {
				return nil, nil
			}
		}
		return next(ctx, method, req)
	}
}
