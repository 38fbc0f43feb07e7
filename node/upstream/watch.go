package upstream

import (
	"context"
	"fmt"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// A 2026-07-28 agent subscribes to resource updates on its
// subscriptions/listen stream; the node relays them from its upstreams.
// Every agent's subscription to one resource of one upstream shares one
// upstream subscription (WatchResource): on a session of the node's own
// per upstream (the watch session), dialled with the first subscription
// and kept while any remains, with the upstream's stream of unsolicited
// messages open (a legacy upstream sends updates there). go-sdk's client
// subscribes a 2026-07-28 session with one subscriptions/listen per
// resource (ClientSession.Subscribe; the call that would carry several is
// unexported), so the node holds one upstream listen per subscribed
// resource and upstream, however many agents listen.
//
// stdio upstreams are not watched: their one child process has one
// session, shared by every call, whose unsolicited messages could not be
// told apart.

// watch is an upstream's watch session and who listens through it.
type watch struct {
	s *mcp.ClientSession
	// subs are the listeners of each upstream URI.
	subs map[string]map[*watcher]struct{}
}

type watcher struct {
	fn func(*mcp.ResourceUpdatedNotificationParams)
}

// WatchResource subscribes to updates of uri (the upstream's URI) on t and
// calls fn with each, until stop is called. fn must not block: it runs on
// the watch session's reading goroutine. Safe for concurrent use.
func (p *Pool) WatchResource(ctx context.Context, t Target, uri string, fn func(*mcp.ResourceUpdatedNotificationParams)) (stop func(), err error) {
	if t.Transport == TransportStdio {
		return nil, fmt.Errorf("upstream %s: resource updates of stdio upstreams are not relayed to 2026-07-28 agents", t.Key())
	}
	c := p.conn(t)
	w := &watcher{fn: fn}
	p.watchMu.Lock()
	defer p.watchMu.Unlock()
	wt := p.watches[c]
	if wt == nil {
		c.mu.Lock()
		s, err := p.dial(ctx, c, p.watchClient(), true)
		c.mu.Unlock()
		if err != nil {
			return nil, err
		}
		wt = &watch{s: s, subs: map[string]map[*watcher]struct{}{}}
		p.watches[c] = wt
	}
	if wt.subs[uri] == nil {
		tok, err := p.mint(ctx, t)
		if err != nil {
			return nil, err
		}
		sctx, cancel := context.WithTimeout(withToken(context.WithoutCancel(ctx), t, tok), p.cfg.CallTimeout)
		err = wt.s.Subscribe(sctx, &mcp.SubscribeParams{URI: uri})
		cancel()
		if err != nil {
			p.unwatchLocked(c, wt)
			return nil, fmt.Errorf("subscribe to %s of upstream %s: %w", uri, t.Key(), err)
		}
		wt.subs[uri] = map[*watcher]struct{}{}
	}
	wt.subs[uri][w] = struct{}{}
	var once sync.Once
	return func() { once.Do(func() { p.unwatch(c, wt, uri, w) }) }, nil
}

func (p *Pool) unwatch(c *conn, wt *watch, uri string, w *watcher) {
	p.watchMu.Lock()
	defer p.watchMu.Unlock()
	delete(wt.subs[uri], w)
	if len(wt.subs[uri]) > 0 {
		return
	}
	delete(wt.subs, uri)
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.CallTimeout)
	if err := wt.s.Unsubscribe(ctx, &mcp.UnsubscribeParams{URI: uri}); err != nil {
		p.logger.Debug("upstream unsubscribe failed", "upstream", c.target.Key(), "error", err)
	}
	cancel()
	p.unwatchLocked(c, wt)
}

// unwatchLocked closes wt once nothing listens through it. p.watchMu must
// be held.
func (p *Pool) unwatchLocked(c *conn, wt *watch) {
	if len(wt.subs) > 0 || p.watches[c] != wt {
		return
	}
	delete(p.watches, c)
	go wt.s.Close() // Close waits for the session's calls; not under the lock
}

// watchClient returns the client of watch sessions, made on first use.
func (p *Pool) watchClient() *mcp.Client {
	p.watchOnce.Do(func() {
		p.watchCl = mcp.NewClient(&mcp.Implementation{Name: "mcpmesh", Version: "1"}, &mcp.ClientOptions{
			Logger:                 p.logger,
			Capabilities:           &mcp.ClientCapabilities{},
			MultiRoundTrip:         &mcp.MultiRoundTripOptions{Disabled: true},
			ResourceUpdatedHandler: p.onResourceUpdated,
		})
		p.watchCl.AddSendingMiddleware(metaToken)
	})
	return p.watchCl
}

func (p *Pool) onResourceUpdated(_ context.Context, req *mcp.ResourceUpdatedNotificationRequest) {
	p.watchMu.Lock()
	var fns []func(*mcp.ResourceUpdatedNotificationParams)
	for _, wt := range p.watches {
		if wt.s != req.Session {
			continue
		}
		for w := range wt.subs[req.Params.URI] {
			fns = append(fns, w.fn)
		}
	}
	p.watchMu.Unlock()
	for _, fn := range fns {
		fn(req.Params)
	}
}

// closeWatches closes every watch session (Pool.Close).
func (p *Pool) closeWatches() {
	p.watchMu.Lock()
	watches := p.watches
	p.watches = map[*conn]*watch{}
	p.watchMu.Unlock()
	for _, wt := range watches {
		wt.s.Close()
	}
}
