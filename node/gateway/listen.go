package gateway

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpmesh/mcpmesh/node/policy"
	"github.com/mcpmesh/mcpmesh/node/upstream"
	"github.com/mcpmesh/mcpmesh/trust/agentauth"
)

// A 2026-07-28 agent subscribes to resource updates on its
// subscriptions/listen stream (notifications.resourceSubscriptions), with
// the URIs of the endpoint it listens on: "mcpmesh://<ns>/<server>/<uri>"
// on /mcp, the upstream's own on /mcp/s/<ns>/<server>. go-sdk hands each
// URI to the endpoint's subscribe handler; for such an agent it lands here
// (listenSubscribe), is authorized as a resources/read of that URI
// (policy, kill switch, served server), and joins the node's one upstream
// subscription to that resource (upstream.Pool.WatchResource). Updates
// from the upstream go through one bounded queue (listenQueueSize; a full
// queue drops and counts in mcpmesh_gateway_relay_dropped_total) to
// go-sdk's Server.ResourceUpdated, which writes them on the listen streams
// subscribed to the URI; the endpoint's sending middleware (listenFilter)
// lets an update reach only the listeners that may still read it, checked
// again at delivery, so a kill switch or policy change stops them at once.
// Subscriptions end with the listen.

// listenQueueSize bounds the resource updates waiting for delivery.
const listenQueueSize = 1024

// listenRelay is the gateway's state of 2026-07-28 resource subscriptions.
// Its zero value is ready.
type listenRelay struct {
	mu   sync.Mutex
	subs map[listenKey]*listenSub

	qmu     sync.Mutex
	queue   []listenUpdate
	running bool

	// delivering is the update being written now, for listenFilter.
	delivering atomic.Pointer[listenUpdate]
}

type listenKey struct {
	ep  *endpoint
	ss  *mcp.ServerSession
	uri string // as the agent named it
}

type listenSub struct {
	p       agentauth.Principal
	resolve func(uri string) (upstream.Target, string, error)
	stop    func()
}

type listenUpdate struct {
	ep  *endpoint
	uri string // as agents on ep name it
}

// listenSubscribe subscribes the 2026-07-28 agent session ss to uri.
func (g *Gateway) listenSubscribe(ctx context.Context, ep *endpoint, ss *mcp.ServerSession, uri string, resolve func(uri string) (upstream.Target, string, error)) error {
	t, original, err := resolve(uri)
	if err != nil {
		return err
	}
	p, _ := agentauth.FromContext(ctx)
	if err := g.authorize(&policy.Request{Principal: p, Action: policy.ActionReadResource, Server: g.server(t.Server), URI: original},
		fmt.Sprintf("subscriptions/listen to %s of %s", original, t.Server)); err != nil {
		return err
	}
	agg := ep == g.agg
	server := t.Server
	stop, err := g.pool.WatchResource(ctx, t, original, func(up *mcp.ResourceUpdatedNotificationParams) {
		u := listenUpdate{ep: ep, uri: up.URI}
		if agg {
			u.uri = g.aggregatedURI(server, up.URI)
		}
		g.enqueueUpdate(u)
	})
	if err != nil {
		return err
	}
	key := listenKey{ep, ss, uri}
	l := &g.listen
	l.mu.Lock()
	if l.subs == nil {
		l.subs = map[listenKey]*listenSub{}
	}
	prev := l.subs[key]
	l.subs[key] = &listenSub{p: p, resolve: resolve, stop: stop}
	l.mu.Unlock()
	if prev != nil {
		prev.stop()
	}
	return nil
}

// listenUnsubscribe ends ss's subscription to uri.
func (g *Gateway) listenUnsubscribe(ep *endpoint, ss *mcp.ServerSession, uri string) {
	l := &g.listen
	l.mu.Lock()
	sub := l.subs[listenKey{ep, ss, uri}]
	delete(l.subs, listenKey{ep, ss, uri})
	l.mu.Unlock()
	if sub != nil {
		sub.stop()
	}
}

// enqueueUpdate queues u for delivery, or drops and counts it when the
// queue is full; it never blocks the upstream's session.
func (g *Gateway) enqueueUpdate(u listenUpdate) {
	l := &g.listen
	l.qmu.Lock()
	defer l.qmu.Unlock()
	if len(l.queue) >= listenQueueSize {
		g.metrics.relayDropped.WithLabelValues(g.cfg.Namespace, "resource_updated").Inc()
		return
	}
	l.queue = append(l.queue, u)
	if l.running {
		return
	}
	l.running = true
	g.bg.Add(1)
	go g.deliverUpdates()
}

// deliverUpdates writes queued updates, one at a time, until none is left.
func (g *Gateway) deliverUpdates() {
	defer g.bg.Done()
	l := &g.listen
	for {
		l.qmu.Lock()
		if len(l.queue) == 0 {
			l.running = false
			l.queue = nil
			l.qmu.Unlock()
			return
		}
		u := l.queue[0]
		l.queue = l.queue[1:]
		l.qmu.Unlock()
		u.ep.notifyMu.Lock()
		l.delivering.Store(&u)
		u.ep.server.ResourceUpdated(context.Background(), &mcp.ResourceUpdatedNotificationParams{URI: u.uri})
		l.delivering.Store(nil)
		u.ep.notifyMu.Unlock()
	}
}

// listenFilter is ep's sending middleware for relayed resource updates: an
// update reaches a session only if it subscribed here and may still read
// the resource (served server, no kill switch, policy allows).
func (g *Gateway) listenFilter(ep *endpoint) mcp.Middleware {
	return func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			if method != "notifications/resources/updated" {
				return next(ctx, method, req)
			}
			u := g.listen.delivering.Load()
			if u == nil || u.ep != ep {
				return next(ctx, method, req)
			}
			ss, _ := req.GetSession().(*mcp.ServerSession)
			g.listen.mu.Lock()
			sub := g.listen.subs[listenKey{ep, ss, u.uri}]
			g.listen.mu.Unlock()
			if sub == nil || !g.listenerMayRead(sub, u.uri) {
				return nil, nil
			}
			return next(ctx, method, req)
		}
	}
}

// listenerMayRead decides, quietly (a delivery is not a request of the agent's),
// whether sub's agent may still read uri.
func (g *Gateway) listenerMayRead(sub *listenSub, uri string) bool {
	t, original, err := sub.resolve(uri)
	if err != nil {
		return false
	}
	return g.mayRead(sub.p, t.Server, original)
}
