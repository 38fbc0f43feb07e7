package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// What an upstream tells its clients unsolicited — a resource it was
// subscribed to changed (notifications/resources/updated), its prompts or
// resources changed (notifications/{prompts,resources}/list_changed) — the
// node hears on one session of its own per upstream, the watch session,
// and hands to the gateway, which relays it to the agents that may see it.
// The shared sessions of calls never hear it (their unsolicited stream is
// closed), nor is what an agent's own sessions (Affinity) hear of list
// changes relayed: an agent would get one copy per upstream session.
//
//   - WatchResource subscribes to one resource: every agent's subscription
//     to it shares one upstream subscription. go-sdk's client subscribes a
//     2026-07-28 session with one subscriptions/listen per resource
//     (ClientSession.Subscribe; the call that would carry several is
//     unexported), so the node holds one upstream listen per subscribed
//     resource and upstream, however many agents listen.
//   - WatchLists hears of prompt and resource list changes: on a legacy
//     upstream from its stream of unsolicited messages (the GET stream),
//     on a 2026-07-28 one from a subscriptions/listen go-sdk opens with the
//     session when the upstream says its lists change.
//
// The watch session is dialled with the first watcher and closed with the
// last. It is not dialled under the agent's request context: go-sdk keeps
// a session's connection context values for its whole life, and the
// agent's request carries its protocol revision, which would go upstream
// as the session's (a legacy upstream then refused every request of the
// session, and no update ever came).
//
// A watch session breaks when its upstream restarts or a stream drops:
// the session ends (legacy; go-sdk ends it when the GET stream cannot be
// resumed), or a listen stream ends without its result (2026-07-28; go-sdk
// drops such a listen silently, so the pool watches the listens' response
// bodies, listenObserver). Its goroutine then re-dials, backing off from
// watchBackoffMin to watchBackoffMax, re-subscribes every resource that
// still has watchers, and tells every watcher that what it watches may
// have changed meanwhile (an update for each resource, a list change of
// each kind): what the upstream said while no session listened is lost.
//
// A stdio upstream's one child process has one session, shared by every
// call: it is that upstream's watch session too, dialled with a client
// that hears what it notifies (stdioClient). Updates there carry their
// URI and go to the watchers of that URI, as on any watch session.

// Bounds of the backoff between re-dials of a broken watch session.
const (
	watchBackoffMin = 100 * time.Millisecond
	watchBackoffMax = 5 * time.Second
)

// List kinds a list watcher hears of (WatchLists).
const (
	ListPrompts   = "prompts"
	ListResources = "resources"
)

// watch is an upstream's watch session and who listens through it.
// Guarded by Pool.watchMu.
type watch struct {
	c *conn
	// s is the session; nil while a broken one is re-dialled.
	s *mcp.ClientSession
	// subs are the watchers of each upstream URI; lists hear of list
	// changes.
	subs  map[string]map[*watcher]struct{}
	lists map[*listWatcher]struct{}
	// broken is signalled when a listen stream of s ended by itself.
	broken chan struct{}
	// quit ends the watch's goroutine; stopped is set with it.
	quit    chan struct{}
	stopped bool
}

type watcher struct {
	fn func(*mcp.ResourceUpdatedNotificationParams)
}

type listWatcher struct {
	fn func(kind string)
}

// WatchResource subscribes to updates of uri (the upstream's URI) on t and
// calls fn with each, until stop is called; also after the watch session
// was re-dialled (see above). fn must not block: it runs on the watch
// session's reading goroutine. Safe for concurrent use.
func (p *Pool) WatchResource(ctx context.Context, t Target, uri string, fn func(*mcp.ResourceUpdatedNotificationParams)) (stop func(), err error) {
	// The subscription is the agent's request: it carries the agent's
	// token, minted before anything leaves the agent's context.
	tok, err := p.mint(ctx, t)
	if err != nil {
		return nil, err
	}
	w := &watcher{fn: fn}
	p.watchMu.Lock()
	defer p.watchMu.Unlock()
	wt, err := p.watchLocked(t)
	if err != nil {
		return nil, err
	}
	if wt.subs[uri] == nil {
		// While a broken session is re-dialled, the re-dial subscribes.
		if wt.s != nil {
			if err := p.subscribe(wt.s, t, uri, tok); err != nil {
				p.unwatchLocked(wt)
				return nil, err
			}
		}
		wt.subs[uri] = map[*watcher]struct{}{}
	}
	wt.subs[uri][w] = struct{}{}
	var once sync.Once
	return func() { once.Do(func() { p.unwatch(wt, uri, w) }) }, nil
}

// WatchLists calls fn with ListPrompts or ListResources each time t says
// that list changed, until stop is called; also after the watch session
// was re-dialled (see above). fn must not block. Safe for concurrent use.
func (p *Pool) WatchLists(t Target, fn func(kind string)) (stop func(), err error) {
	w := &listWatcher{fn: fn}
	p.watchMu.Lock()
	defer p.watchMu.Unlock()
	wt, err := p.watchLocked(t)
	if err != nil {
		return nil, err
	}
	wt.lists[w] = struct{}{}
	var once sync.Once
	return func() {
		once.Do(func() {
			p.watchMu.Lock()
			defer p.watchMu.Unlock()
			delete(wt.lists, w)
			p.unwatchLocked(wt)
		})
	}, nil
}

// watchLocked returns t's watch, dialling its session and starting its
// goroutine first if there is none. p.watchMu must be held.
func (p *Pool) watchLocked(t Target) (*watch, error) {
	c := p.conn(t)
	if wt := p.watches[c]; wt != nil {
		return wt, nil
	}
	wt := &watch{c: c, subs: map[string]map[*watcher]struct{}{}, lists: map[*listWatcher]struct{}{},
		broken: make(chan struct{}, 1), quit: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.CallTimeout)
	defer cancel()
	s, err := p.dialWatch(ctx, wt)
	if err != nil {
		return nil, err
	}
	wt.s = s
	p.watches[c] = wt
	p.watchWG.Add(1)
	go p.keep(wt)
	return wt, nil
}

// dialWatch dials wt's session: a session of the node's own with its
// unsolicited stream open, or a stdio upstream's shared one.
func (p *Pool) dialWatch(ctx context.Context, wt *watch) (*mcp.ClientSession, error) {
	c := wt.c
	if c.target.Transport == TransportStdio {
		return shared{p}.session(ctx, c)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return p.dialWith(ctx, c, p.watchClient(), func() (mcp.Transport, error) {
		if c.target.Transport != TransportStreamableHTTP {
			return p.transport(c.target, true)
		}
		hc := p.httpFor(c.target)
		hc.Transport = listenObserver{base: hc.Transport, ended: wt.breaks}
		return &mcp.StreamableClientTransport{Endpoint: c.target.URL, HTTPClient: hc, MaxRetries: 1}, nil
	})
}

// breaks signals that a listen stream of wt's session ended by itself.
func (wt *watch) breaks() {
	select {
	case wt.broken <- struct{}{}:
	default:
	}
}

// subscribe subscribes s to uri under tok (the node's own token if "").
func (p *Pool) subscribe(s *mcp.ClientSession, t Target, uri, tok string) error {
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.CallTimeout)
	defer cancel()
	if err := s.Subscribe(withToken(ctx, t, tok), &mcp.SubscribeParams{URI: uri}); err != nil {
		return fmt.Errorf("subscribe to %s of upstream %s: %w", uri, t.Key(), err)
	}
	return nil
}

// keep re-dials wt's session whenever it breaks, until wt is stopped.
func (p *Pool) keep(wt *watch) {
	defer p.watchWG.Done()
	for {
		p.watchMu.Lock()
		s, stopped := wt.s, wt.stopped
		p.watchMu.Unlock()
		if stopped || s == nil {
			return
		}
		ended := make(chan struct{})
		go func() {
			s.Wait()
			close(ended)
		}()
		select {
		case <-wt.quit:
			return
		case <-ended:
		case <-wt.broken:
		}
		p.logger.Warn("upstream watch session broke; re-dialling and re-subscribing", "upstream", wt.c.target.Key())
		p.watchMu.Lock()
		wt.s = nil
		p.watchMu.Unlock()
		p.retire(wt, s, true)
		backoff := watchBackoffMin
		for {
			select {
			case <-wt.quit:
				return
			case <-time.After(backoff):
			}
			err := p.rewatch(wt)
			if err == nil {
				break
			}
			p.logger.Warn("upstream watch session: re-dial failed", "upstream", wt.c.target.Key(), "retryIn", backoff, "error", err)
			backoff = min(2*backoff, watchBackoffMax)
		}
	}
}

// rewatch dials a new session for wt, subscribes every resource that has
// watchers, and tells every watcher it may have missed something.
func (p *Pool) rewatch(wt *watch) error {
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.CallTimeout)
	defer cancel()
	// Drain a break signalled by the old session's streams.
	select {
	case <-wt.broken:
	default:
	}
	s, err := p.dialWatch(ctx, wt)
	if err != nil {
		return err
	}
	var done []string
	for {
		p.watchMu.Lock()
		if wt.stopped {
			p.watchMu.Unlock()
			p.retire(wt, s, false)
			return nil
		}
		var todo []string
		for uri := range wt.subs {
			if !slices.Contains(done, uri) {
				todo = append(todo, uri)
			}
		}
		if len(todo) == 0 {
			// Every resource watched now is subscribed: later ones
			// subscribe themselves (WatchResource).
			wt.s = s
			var fns []func()
			for uri, ws := range wt.subs {
				for w := range ws {
					fns = append(fns, func() { w.fn(&mcp.ResourceUpdatedNotificationParams{URI: uri}) })
				}
			}
			for w := range wt.lists {
				fns = append(fns, func() { w.fn(ListPrompts) }, func() { w.fn(ListResources) })
			}
			p.watchMu.Unlock()
			for _, fn := range fns {
				fn()
			}
			return nil
		}
		p.watchMu.Unlock()
		for _, uri := range todo {
			if err := p.subscribe(s, wt.c.target, uri, ""); err != nil {
				p.retire(wt, s, true)
				return err
			}
			done = append(done, uri)
		}
	}
}

// retire lets go of s, a session of wt: closes it, except a stdio
// upstream's shared session, which is dropped only when broken.
func (p *Pool) retire(wt *watch, s *mcp.ClientSession, broken bool) {
	if s == nil {
		return
	}
	if wt.c.target.Transport == TransportStdio {
		if broken {
			shared{p}.drop(wt.c, s)
		}
		return
	}
	// Close waits for the session's calls: not under a lock. Pool.Close
	// waits for it, so the upstream sees the session end.
	p.watchWG.Add(1)
	go func() {
		defer p.watchWG.Done()
		s.Close()
	}()
}

func (p *Pool) unwatch(wt *watch, uri string, w *watcher) {
	p.watchMu.Lock()
	defer p.watchMu.Unlock()
	delete(wt.subs[uri], w)
	if len(wt.subs[uri]) > 0 {
		return
	}
	delete(wt.subs, uri)
	if wt.s != nil {
		ctx, cancel := context.WithTimeout(context.Background(), p.cfg.CallTimeout)
		if err := wt.s.Unsubscribe(withToken(ctx, wt.c.target, ""), &mcp.UnsubscribeParams{URI: uri}); err != nil {
			p.logger.Debug("upstream unsubscribe failed", "upstream", wt.c.target.Key(), "error", err)
		}
		cancel()
	}
	p.unwatchLocked(wt)
}

// unwatchLocked stops wt once nothing listens through it. p.watchMu must
// be held.
func (p *Pool) unwatchLocked(wt *watch) {
	if len(wt.subs) > 0 || len(wt.lists) > 0 || wt.stopped {
		return
	}
	if p.watches[wt.c] == wt {
		delete(p.watches, wt.c)
	}
	wt.stopped = true
	close(wt.quit)
	p.retire(wt, wt.s, false)
	wt.s = nil
}

// watchClient returns the client of watch sessions, made on first use.
func (p *Pool) watchClient() *mcp.Client {
	p.watchOnce.Do(func() {
		p.watchCl = mcp.NewClient(&mcp.Implementation{Name: "mcpmesh", Version: "1"}, p.hearing(&mcp.ClientOptions{
			Logger:         p.logger,
			Capabilities:   &mcp.ClientCapabilities{},
			MultiRoundTrip: &mcp.MultiRoundTripOptions{Disabled: true},
		}))
		p.watchCl.AddSendingMiddleware(metaToken)
	})
	return p.watchCl
}

// stdioClient returns the client of stdio upstreams' shared sessions: the
// pool's, plus what a watch hears (see above).
func (p *Pool) stdioClient() *mcp.Client {
	p.stdioOnce.Do(func() {
		p.stdioCl = mcp.NewClient(&mcp.Implementation{Name: "mcpmesh", Version: "1"}, p.hearing(&mcp.ClientOptions{
			Logger:                      p.logger,
			ProgressNotificationHandler: p.onProgress,
			MultiRoundTrip:              &mcp.MultiRoundTripOptions{Disabled: true},
		}))
		p.stdioCl.AddSendingMiddleware(metaToken)
	})
	return p.stdioCl
}

// hearing sets o's handlers of what an upstream notifies unsolicited
// (resource updates, list changes) to hand it to the watchers of the
// session it arrives on, and returns o.
func (p *Pool) hearing(o *mcp.ClientOptions) *mcp.ClientOptions {
	o.ResourceUpdatedHandler = p.onResourceUpdated
	o.PromptListChangedHandler = func(_ context.Context, req *mcp.PromptListChangedRequest) { p.onListChanged(req.Session, ListPrompts) }
	o.ResourceListChangedHandler = func(_ context.Context, req *mcp.ResourceListChangedRequest) {
		p.onListChanged(req.Session, ListResources)
	}
	return o
}

func (p *Pool) onResourceUpdated(_ context.Context, req *mcp.ResourceUpdatedNotificationRequest) {
	if req.Params == nil {
		return
	}
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

func (p *Pool) onListChanged(s *mcp.ClientSession, kind string) {
	p.watchMu.Lock()
	var fns []func(string)
	for _, wt := range p.watches {
		if wt.s == s {
			for w := range wt.lists {
				fns = append(fns, w.fn)
			}
		}
	}
	p.watchMu.Unlock()
	for _, fn := range fns {
		fn(kind)
	}
}

// closeWatches stops every watch and closes its session (Pool.Close).
func (p *Pool) closeWatches() {
	p.watchMu.Lock()
	var open []*mcp.ClientSession
	for _, wt := range p.watches {
		if wt.s != nil && wt.c.target.Transport != TransportStdio {
			open = append(open, wt.s)
		}
		wt.subs, wt.lists, wt.s = nil, nil, nil
		p.unwatchLocked(wt)
	}
	p.watches = map[*conn]*watch{}
	p.watchMu.Unlock()
	// Closed before returning, so the upstream sees them end.
	for _, s := range open {
		s.Close()
	}
	p.watchWG.Wait()
}

// listenObserver tells, through ended, when the stream of a
// subscriptions/listen of a watch session ends without carrying the
// listen's result, while the request was not cancelled: the upstream went
// away or dropped the stream, and go-sdk gives up such a listen silently.
type listenObserver struct {
	base  http.RoundTripper
	ended func()
}

func (o listenObserver) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := o.base.RoundTrip(r)
	if r.Method != http.MethodPost || r.Header.Get("Mcp-Method") != "subscriptions/listen" {
		return resp, err
	}
	if err != nil {
		if r.Context().Err() == nil {
			o.ended()
		}
		return resp, err
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return resp, nil // refused, or answered at once: nothing to keep
	}
	resp.Body = &listenBody{ReadCloser: resp.Body, ctx: r.Context(), ended: o.ended}
	return resp, nil
}

// listenBody is a listen's event stream, watched for its end.
type listenBody struct {
	io.ReadCloser
	ctx   context.Context
	ended func()

	line     []byte
	answered bool // the listen's result (or error) went by
	once     sync.Once
}

func (b *listenBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.scan(p[:n])
	if err != nil && !b.answered && b.ctx.Err() == nil {
		b.once.Do(b.ended)
	}
	return n, err
}

// scan looks, in the event stream's data lines, for the JSON-RPC response
// that ends a listen normally.
func (b *listenBody) scan(p []byte) {
	for len(p) > 0 && !b.answered {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if len(b.line) < 1<<16 { // longer lines are not a listen's result
				b.line = append(b.line, p...)
			}
			return
		}
		line := append(b.line, p[:i]...)
		b.line = b.line[:0]
		p = p[i+1:]
		data, ok := bytes.CutPrefix(bytes.TrimRight(line, "\r"), []byte("data:"))
		if !ok {
			continue
		}
		var msg struct {
			Method string          `json:"method"`
			ID     json.RawMessage `json:"id"`
		}
		if json.Unmarshal(bytes.TrimSpace(data), &msg) == nil && msg.Method == "" && len(msg.ID) > 0 {
			b.answered = true
		}
	}
}
