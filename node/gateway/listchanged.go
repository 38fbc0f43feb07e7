package gateway

import (
	"context"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/node/upstream"
	"github.com/mcpmesh/mcpmesh/trust/agentauth"
)

// When an upstream says its prompts or resources changed, the agents that
// see that server hear it: notifications/prompts/list_changed or
// notifications/resources/list_changed, once per change and agent, on the
// endpoints that show the server (/mcp and /mcp/s/<ns>/<server>).
//
// Who hears (the audience): every legacy session of an endpoint (legacy
// agents get list changes without asking), from its first request until it
// ends, and every 2026-07-28 subscriptions/listen that asked for prompt or
// resource list changes, while it lasts. An agent hears a change of a
// server only if it may see the server: no kill switch stops it, and the
// policy lets it list what the endpoint shows (the namespace on /mcp, the
// server on its own endpoint), decided when the change comes.
//
// How the node learns of changes: while an endpoint has an audience, the
// node watches the lists of the servers it shows (upstream.Pool.WatchLists:
// one watch session per upstream, never the agents' own sessions, so an
// agent gets one notification per change, not one per upstream session it
// holds). Changes go through one bounded queue (listQueueSize; a full
// queue drops and counts in mcpmesh_gateway_relay_dropped_total, kind
// list_changed), so the upstream's session never waits for the agents.
//
// How they are sent: go-sdk sends list changes only through its own
// debounced notifier, to every legacy session and every listen that asked,
// when the server's prompts or resources are added or removed. The gateway
// serves none of its own (prompts and resources pass through, prompts.go,
// resources.go, passthrough.go), so it adds and removes a placeholder no
// listing ever shows (the listings are answered before go-sdk's), and the
// endpoint's sending middleware (listFilter) lets the notification reach
// only the sessions that are owed one.

// listQueueSize bounds the list changes waiting for delivery.
const listQueueSize = 1024

// listRetry is how soon a list watch that could not start is tried again.
const listRetry = 5 * time.Second

// Placeholders added and removed to make go-sdk send a list change.
const (
	placeholderPrompt   = "io.mcpmesh.list-changed"
	placeholderResource = "mcpmesh:list-changed"
)

// Bits of what a session is owed.
const (
	owedPrompts uint8 = 1 << iota
	owedResources
)

// listRelay is the gateway's state of upstream list changes. Its zero value
// is ready.
type listRelay struct {
	mu sync.Mutex
	// audience holds who hears list changes on each endpoint.
	audience map[*endpoint]map[*mcp.ServerSession]agentauth.Principal
	// legacy are the legacy sessions in the audience until they end.
	legacy map[*mcp.ServerSession]bool
	// owed are the list changes owed to each session.
	owed map[*mcp.ServerSession]uint8
	// watching are the list watches of servers, with their targets.
	watching map[string]listWatch
	// dirty asks the reconciler to run (again); reconciling is set while
	// it runs.
	dirty, reconciling bool

	queue   []listChange
	running bool
}

type listWatch struct {
	key  string
	stop func()
}

type listChange struct {
	server, kind string
}

// listAudience is a receiving middleware of ep: it adds legacy sessions,
// and 2026-07-28 listens for prompt or resource list changes, to ep's
// audience.
func (g *Gateway) listAudience(ep *endpoint) mcp.Middleware {
	return func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			ss := session(req)
			if ss == nil {
				return next(ctx, method, req)
			}
			if legacySession(ss) {
				g.joinLegacy(ep, ss, req, ctx)
				return next(ctx, method, req)
			}
			if method != "subscriptions/listen" {
				return next(ctx, method, req)
			}
			params, _ := req.GetParams().(*mcp.SubscriptionsListenParams)
			if params == nil || params.Notifications == nil || !(params.Notifications.PromptsListChanged || params.Notifications.ResourcesListChanged) {
				return next(ctx, method, req)
			}
			p, _ := principalOf(ctx, req)
			g.join(ep, ss, p)
			defer g.leave(ep, ss)
			return next(ctx, method, req)
		}
	}
}

// joinLegacy adds a legacy session to ep's audience until it ends.
func (g *Gateway) joinLegacy(ep *endpoint, ss *mcp.ServerSession, req mcp.Request, ctx context.Context) {
	l := &g.lists
	l.mu.Lock()
	known := l.legacy[ss]
	if !known {
		if l.legacy == nil {
			l.legacy = map[*mcp.ServerSession]bool{}
		}
		l.legacy[ss] = true
	}
	l.mu.Unlock()
	if known {
		return
	}
	p, _ := principalOf(ctx, req)
	g.join(ep, ss, p)
	g.bg.Add(1)
	go func() {
		defer g.bg.Done()
		ss.Wait()
		g.leave(ep, ss)
		l.mu.Lock()
		delete(l.legacy, ss)
		l.mu.Unlock()
	}()
}

func (g *Gateway) join(ep *endpoint, ss *mcp.ServerSession, p agentauth.Principal) {
	l := &g.lists
	l.mu.Lock()
	if l.audience == nil {
		l.audience = map[*endpoint]map[*mcp.ServerSession]agentauth.Principal{}
	}
	if l.audience[ep] == nil {
		l.audience[ep] = map[*mcp.ServerSession]agentauth.Principal{}
	}
	first := len(l.audience[ep]) == 0
	l.audience[ep][ss] = p
	l.mu.Unlock()
	if first {
		g.reconcileLists()
	}
}

func (g *Gateway) leave(ep *endpoint, ss *mcp.ServerSession) {
	l := &g.lists
	l.mu.Lock()
	delete(l.audience[ep], ss)
	last := len(l.audience[ep]) == 0
	if last {
		delete(l.audience, ep)
	}
	delete(l.owed, ss)
	l.mu.Unlock()
	if last {
		g.reconcileLists()
	}
}

// reconcileLists has the list watches follow the audiences and the served
// servers (Sync calls it too): it starts a watch of each server some
// endpoint with an audience shows, and stops the others. The work is done
// in the background, one run at a time.
func (g *Gateway) reconcileLists() {
	l := &g.lists
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dirty = true
	if l.reconciling || g.life.Err() != nil {
		return
	}
	l.reconciling = true
	g.bg.Add(1)
	go func() {
		defer g.bg.Done()
		for {
			l.mu.Lock()
			if !l.dirty || g.life.Err() != nil {
				l.reconciling = false
				l.mu.Unlock()
				return
			}
			l.dirty = false
			l.mu.Unlock()
			g.reconcileOnce()
		}
	}()
}

// reconcileOnce starts and stops list watches once; a watch that could not
// start is tried again after listRetry.
func (g *Gateway) reconcileOnce() {
	want := map[string]upstream.Target{}
	l := &g.lists
	l.mu.Lock()
	eps := make([]*endpoint, 0, len(l.audience))
	for ep := range l.audience {
		eps = append(eps, ep)
	}
	l.mu.Unlock()
	for _, ep := range eps {
		if ep == g.agg {
			if targets := g.targets.Load(); targets != nil {
				for s, t := range *targets {
					if t.Transport != upstream.TransportFederation {
						want[s] = t
					}
				}
			}
		} else if t, err := ep.live(); err == nil && t.Transport != upstream.TransportFederation {
			want[t.Server] = t
		}
	}
	l.mu.Lock()
	if l.watching == nil {
		l.watching = map[string]listWatch{}
	}
	var stops []func()
	for s, w := range l.watching {
		if t, ok := want[s]; !ok || t.Key() != w.key {
			stops = append(stops, w.stop)
			delete(l.watching, s)
		}
	}
	var start []upstream.Target
	for s, t := range want {
		if _, ok := l.watching[s]; !ok {
			start = append(start, t)
		}
	}
	l.mu.Unlock()
	for _, stop := range stops {
		stop()
	}
	failed := false
	for _, t := range start {
		server := t.Server
		stop, err := g.pool.WatchLists(t, func(kind string) { g.enqueueListChange(listChange{server: server, kind: kind}) })
		if err != nil {
			g.logger.Warn("gateway: cannot watch an upstream's prompt and resource lists; agents will not hear of their changes until it can", "server", server, "error", err)
			failed = true
			continue
		}
		l.mu.Lock()
		if _, dup := l.watching[server]; dup || g.life.Err() != nil {
			l.mu.Unlock()
			stop()
			continue
		}
		l.watching[server] = listWatch{key: t.Key(), stop: stop}
		l.mu.Unlock()
	}
	if failed {
		g.bg.Add(1)
		go func() {
			defer g.bg.Done()
			select {
			case <-g.life.Done():
			case <-time.After(listRetry):
				g.reconcileLists()
			}
		}()
	}
}

// stopListWatches stops every list watch (Close).
func (g *Gateway) stopListWatches() {
	l := &g.lists
	l.mu.Lock()
	watching := l.watching
	l.watching = nil
	l.mu.Unlock()
	for _, w := range watching {
		w.stop()
	}
}

// enqueueListChange queues c for delivery, or drops and counts it when the
// queue is full; it never blocks the upstream's session.
func (g *Gateway) enqueueListChange(c listChange) {
	l := &g.lists
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.queue) >= listQueueSize {
		g.metrics.relayDropped.WithLabelValues(g.cfg.Namespace, "list_changed").Inc()
		return
	}
	l.queue = append(l.queue, c)
	if l.running || g.life.Err() != nil {
		return
	}
	l.running = true
	g.bg.Add(1)
	go g.deliverListChanges()
}

// deliverListChanges hands queued changes to the sessions owed them, one
// at a time, until none is left.
func (g *Gateway) deliverListChanges() {
	defer g.bg.Done()
	l := &g.lists
	for {
		l.mu.Lock()
		if len(l.queue) == 0 {
			l.running = false
			l.queue = nil
			l.mu.Unlock()
			return
		}
		c := l.queue[0]
		l.queue = l.queue[1:]
		l.mu.Unlock()
		g.deliverListChange(c)
	}
}

// deliverListChange marks c owed to every session in the audience of an
// endpoint showing c's server that may see it, and has go-sdk notify.
func (g *Gateway) deliverListChange(c listChange) {
	bit := owedPrompts
	if c.kind == upstream.ListResources {
		bit = owedResources
	}
	eps := []*endpoint{g.agg}
	if ep, ok := g.servers.Load(c.server); ok {
		eps = append(eps, ep.(*endpoint))
	}
	l := &g.lists
	for _, ep := range eps {
		l.mu.Lock()
		audience := make(map[*mcp.ServerSession]agentauth.Principal, len(l.audience[ep]))
		for ss, p := range l.audience[ep] {
			audience[ss] = p
		}
		l.mu.Unlock()
		var owed []*mcp.ServerSession
		for ss, p := range audience {
			if g.maySee(ep, p, c.server) {
				owed = append(owed, ss)
			}
		}
		if len(owed) == 0 {
			continue
		}
		l.mu.Lock()
		if l.owed == nil {
			l.owed = map[*mcp.ServerSession]uint8{}
		}
		for _, ss := range owed {
			if _, still := l.audience[ep][ss]; still {
				l.owed[ss] |= bit
			}
		}
		l.mu.Unlock()
		ep.notifyListChanged(bit)
	}
}

// maySee reports whether p, listening on ep, may hear of changes of
// server's lists: no kill switch stops it and it may list what ep shows.
func (g *Gateway) maySee(ep *endpoint, p agentauth.Principal, server string) bool {
	if _, killed := g.killed(p, server, ""); killed {
		return false
	}
	listed := "" // the namespace, on /mcp
	if ep != g.agg {
		listed = server
	}
	return g.decide(g.listRequest(p, listed)).Allowed
}

// notifyListChanged has go-sdk send ep's sessions a prompts (or resources)
// list change, by adding and removing a placeholder; listFilter lets it
// reach only those owed it. go-sdk sends one notification for both, 10 ms
// later (debounced).
func (ep *endpoint) notifyListChanged(bit uint8) {
	if bit == owedPrompts {
		ep.server.AddPrompt(&mcp.Prompt{Name: placeholderPrompt}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return &mcp.GetPromptResult{}, nil
		})
		ep.server.RemovePrompts(placeholderPrompt)
		return
	}
	ep.server.AddResource(&mcp.Resource{URI: placeholderResource, Name: placeholderResource}, func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return &mcp.ReadResourceResult{}, nil
	})
	ep.server.RemoveResources(placeholderResource)
}

// listFilter is the endpoints' sending middleware for list changes of
// prompts and resources: one reaches a session only if it is owed one,
// and then settles what it was owed.
func (g *Gateway) listFilter(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		var bit uint8
		switch method {
		case "notifications/prompts/list_changed":
			bit = owedPrompts
		case "notifications/resources/list_changed":
			bit = owedResources
		default:
			return next(ctx, method, req)
		}
		ss, _ := req.GetSession().(*mcp.ServerSession)
		l := &g.lists
		l.mu.Lock()
		owed := l.owed[ss]&bit != 0
		if owed {
			l.owed[ss] &^= bit
			if l.owed[ss] == 0 {
				delete(l.owed, ss)
			}
		}
		l.mu.Unlock()
		if !owed {
			return nil, nil
		}
		return next(ctx, method, req)
	}
}
