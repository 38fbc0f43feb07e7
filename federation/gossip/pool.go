package gossip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// ErrClosed is returned by SetHint and Leave after Shutdown.
var ErrClosed = errors.New("gossip: pool shut down")

// deadRetention is how long Members keeps listing a member that failed or
// left, so `mcpmesh members -wan` shows recent departures.
const deadRetention = time.Hour

// DefaultLeaveTimeout bounds the graceful leave Run makes when its context
// ends.
const DefaultLeaveTimeout = 5 * time.Second

// Pool is this node's member of the mesh-wide gossip pool. It owns
// membership, liveness and hints; see the package doc. Its methods are safe
// for concurrent use.
type Pool struct {
	cfg    Config
	name   string
	o      options
	logger *slog.Logger
	met    *metrics
	ml     *memberlist.Memberlist
	addr   string // this member's advertised gossip address

	mu      sync.Mutex
	hint    Hint
	meta    []byte
	since   time.Time
	leaving bool
	closed  bool
	members map[string]*Member // other members, by name
	pending map[string]Member  // changes not yet given to OnChange, by name
	order   []string           // names in pending, oldest first

	// life is held (read) by calls into memberlist that must not overlap
	// its shutdown (memberlist's Leave panics after Shutdown), and
	// (write) by Shutdown.
	life      sync.RWMutex
	notify    chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// New validates cfg, binds the gossip port and starts the pool's own
// member (alone until Run joins others). It fails on an empty keyring, an
// invalid hint and a port it cannot bind.
func New(cfg Config, opts ...Option) (*Pool, error) {
	o := options{retryMin: time.Second, retryMax: 30 * time.Second}
	for _, opt := range opts {
		opt.apply(&o)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	if o.retryMin <= 0 || o.retryMax < o.retryMin {
		return nil, fmt.Errorf("gossip: join backoff %s..%s: want 0 < min <= max", o.retryMin, o.retryMax)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Hint = cfg.Hint.clone()
	cfg.Hint.Leaving = false
	cfg.Join = slices.Clone(cfg.Join)
	meta, err := cfg.Hint.Encode()
	if err != nil {
		return nil, err
	}
	p := &Pool{
		cfg:     cfg,
		name:    cfg.Hint.Name(),
		o:       o,
		logger:  o.logger,
		met:     newMetrics(o.reg),
		hint:    cfg.Hint,
		meta:    meta,
		since:   time.Now(),
		members: map[string]*Member{},
		pending: map[string]Member{},
		notify:  make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	mc, err := p.memberlistConfig()
	if err != nil {
		return nil, err
	}
	if o.tune != nil {
		o.tune(mc)
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("gossip: start memberlist on %s: %w", cfg.Bind, err)
	}
	p.ml = ml
	local := ml.LocalNode()
	p.addr = net.JoinHostPort(local.Addr.String(), strconv.Itoa(int(local.Port)))
	p.mu.Lock()
	p.updateGaugesLocked()
	p.mu.Unlock()
	p.wg.Add(1)
	go p.dispatch()
	return p, nil
}

// memberlistConfig is memberlist's WAN defaults (probe every 5s with a 3s
// timeout, gossip every 500ms to 4 members, push/pull every 60s, scaled up
// past 32 members) with this pool's name, addresses, keyring, label and
// delegates. Nothing is tuned: BUs talk across data centres, and a hint
// that misses a broadcast is repaired by the next push/pull.
func (p *Pool) memberlistConfig() (*memberlist.Config, error) {
	mc := memberlist.DefaultWANConfig()
	mc.Name = p.name
	host, port, _ := splitPort(p.cfg.Bind)
	ip, err := resolveIP(host)
	if err != nil {
		return nil, fmt.Errorf("gossip: bind %q: %w", p.cfg.Bind, err)
	}
	mc.BindAddr, mc.BindPort = ip, port
	mc.AdvertiseAddr, mc.AdvertisePort = "", port
	if p.cfg.Advertise != "" {
		ahost, aport, _ := splitPort(p.cfg.Advertise)
		aip, err := resolveIP(ahost)
		if err != nil {
			return nil, fmt.Errorf("gossip: advertise %q: %w", p.cfg.Advertise, err)
		}
		if aport == 0 {
			aport = port
		}
		mc.AdvertiseAddr, mc.AdvertisePort = aip, aport
	}
	kr, err := memberlist.NewKeyring(p.cfg.Keyring, p.cfg.Keyring[0])
	if err != nil {
		return nil, fmt.Errorf("gossip: keyring: %w", err)
	}
	mc.Keyring = kr
	mc.GossipVerifyIncoming = true
	mc.GossipVerifyOutgoing = true
	mc.Label = p.cfg.Label
	mc.Delegate = delegate{p}
	mc.Events = events{p}
	mc.Logger = newStdLogger(p.logger)
	return mc, nil
}

// resolveIP returns host as an IP address, resolving a DNS name; empty
// means every interface.
func resolveIP(host string) (string, error) {
	if host == "" {
		return "0.0.0.0", nil
	}
	if ip := net.ParseIP(strings.Trim(host, "[]")); ip != nil {
		return ip.String(), nil
	}
	a, err := net.ResolveIPAddr("ip", host)
	if err != nil {
		return "", fmt.Errorf("resolve %q: %w", host, err)
	}
	return a.IP.String(), nil
}

// Name is this member's name, "<namespace>/<node_id>".
func (p *Pool) Name() string { return p.name }

// Addr is this member's advertised gossip address (host:port), the one to
// give other pools in Config.Join; with Bind on port 0 it has the port
// picked.
func (p *Pool) Addr() string { return p.addr }

// Run joins the members in Config.Join and keeps the node joined: while it
// reaches no other member it retries with backoff (1s doubling to 30s by
// default), logging once when it joins and once when it loses everyone.
// With an empty Join it only waits: other nodes join it. When ctx ends, Run
// leaves the pool (bounded by DefaultLeaveTimeout), shuts it down and
// returns nil.
func (p *Pool) Run(ctx context.Context) error {
	p.joinLoop(ctx)
	if err := p.Leave(DefaultLeaveTimeout); err != nil && !errors.Is(err, ErrClosed) {
		p.logger.Warn("gossip: leave was not confirmed; other members will notice the node is gone by probing", "error", err)
	}
	return p.Shutdown()
}

func (p *Pool) joinLoop(ctx context.Context) {
	joined := false
	warned := false
	backoff := p.o.retryMin
	for {
		wait := p.o.retryMax
		if len(p.cfg.Join) > 0 && p.ml.NumMembers() <= 1 {
			n, err := p.ml.Join(p.cfg.Join)
			others := p.ml.NumMembers() - 1
			switch {
			case err == nil && others > 0:
				if !joined {
					p.logger.Info("gossip: joined the mesh", "contacted", n, "members", others+1)
				}
				joined, warned, backoff = true, false, p.o.retryMin
			default:
				if err == nil {
					err = errors.New("only this node answered")
				}
				if !warned {
					if joined {
						p.logger.Warn("gossip: lost every other member; rejoining in the background", "join", p.cfg.Join, "error", err)
					} else {
						p.logger.Warn("gossip: reached no member to join; retrying in the background", "join", p.cfg.Join, "error", err)
					}
					warned = true
				} else {
					p.logger.Debug("gossip: join attempt failed", "error", err)
				}
				joined = false
				wait = backoff
				backoff = min(backoff*2, p.o.retryMax)
			}
		}
		// Jitter, so nodes that start together do not retry together.
		wait = wait/2 + rand.N(wait/2+1)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-p.done:
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// LocalHint returns the hint this node advertises.
func (p *Pool) LocalHint() Hint {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hint.clone()
}

// SetHint changes the hint this node advertises: fn edits a copy of the
// current one. Call it whenever the catalog version (and hash), the bundle
// sequence or the manifest version changes. The new hint reaches the other
// members by broadcast within seconds, and at the latest with the next
// push/pull (every 60s or so). SetHint does not wait for either. It
// refuses a hint that does not validate and a change of namespace or node
// id (the member name); the advertised hint is then unchanged.
func (p *Pool) SetHint(fn func(*Hint)) error {
	p.life.RLock()
	defer p.life.RUnlock()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	h := p.hint.clone()
	fn(&h)
	h.Leaving = p.hint.Leaving
	if h.Name() != p.name {
		p.mu.Unlock()
		return fmt.Errorf("gossip: SetHint: namespace/node id %q: cannot change the member name %q; start a new pool", h.Name(), p.name)
	}
	if h.Equal(p.hint) {
		p.mu.Unlock()
		return nil
	}
	meta, err := h.Encode()
	if err != nil {
		p.mu.Unlock()
		return err
	}
	p.hint, p.meta, p.since = h, meta, time.Now()
	p.mu.Unlock()
	p.advertise(0)
	return nil
}

// advertise makes memberlist broadcast this node's alive message with the
// current NodeMeta. memberlist's UpdateNode queues the broadcast at once
// and then waits until it has been sent its full number of times; with
// wait 0 it does not wait (the error it then reports is only that wait).
func (p *Pool) advertise(wait time.Duration) error {
	if wait <= 0 {
		_ = p.ml.UpdateNode(time.Nanosecond)
		return nil
	}
	return p.ml.UpdateNode(wait)
}

// Members returns every member this node knows, itself included, sorted by
// name: the live ones, and those that failed or left within the last hour.
func (p *Pool) Members() []Member {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reapLocked(time.Now())
	out := make([]Member, 0, len(p.members)+1)
	local := Member{Name: p.name, Addr: p.addr, State: StateAlive, Hint: p.hint.clone(), Local: true, Since: p.since}
	if p.leaving {
		local.State = StateLeft
	}
	out = append(out, local)
	for _, m := range p.members {
		c := *m
		c.Hint = c.Hint.clone()
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (p *Pool) reapLocked(now time.Time) {
	reaped := false
	for name, m := range p.members {
		if m.State != StateAlive && now.Sub(m.Since) > deadRetention {
			delete(p.members, name)
			reaped = true
		}
	}
	if reaped {
		p.updateGaugesLocked()
	}
}

// Leave announces that this node leaves: it first advertises a hint marked
// Leaving (so others record it as left rather than dead) and waits up to
// half of timeout for that broadcast, then sends memberlist's leave and
// waits for it up to the rest. The node keeps answering gossip until
// Shutdown. Calling it again does nothing.
func (p *Pool) Leave(timeout time.Duration) error {
	p.life.RLock()
	defer p.life.RUnlock()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	if p.leaving {
		p.mu.Unlock()
		return nil
	}
	h := p.hint.clone()
	h.Leaving = true
	meta, err := h.Encode()
	if err != nil {
		p.mu.Unlock()
		return err
	}
	p.hint, p.meta, p.since, p.leaving = h, meta, time.Now(), true
	p.updateGaugesLocked()
	p.mu.Unlock()
	deadline := time.Now().Add(timeout)
	if err := p.advertise(timeout / 2); err != nil {
		p.logger.Debug("gossip: the leaving hint was not fully broadcast in time", "error", err)
	}
	if err := p.ml.Leave(max(time.Until(deadline), time.Millisecond)); err != nil {
		return fmt.Errorf("gossip: leave: %w", err)
	}
	return nil
}

// Shutdown stops the pool: memberlist's listeners and timers, and the
// OnChange dispatcher (waiting for a running callback to return, so never
// call it from one). A Leave under way finishes first. Without Leave first, other members notice the node is
// gone only by probing it. It is safe to call more than once.
func (p *Pool) Shutdown() error {
	var err error
	p.closeOnce.Do(func() {
		p.life.Lock()
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		err = p.ml.Shutdown()
		p.life.Unlock()
		// Unlocked: a running OnChange may call SetHint, which now
		// returns ErrClosed instead of waiting for us.
		close(p.done)
		p.wg.Wait()
	})
	if err != nil {
		return fmt.Errorf("gossip: shutdown: %w", err)
	}
	return nil
}

// dispatch gives queued changes to the OnChange callback, one at a time.
func (p *Pool) dispatch() {
	defer p.wg.Done()
	for {
		select {
		case <-p.done:
			return
		case <-p.notify:
		}
		for {
			p.mu.Lock()
			if len(p.order) == 0 {
				p.mu.Unlock()
				break
			}
			name := p.order[0]
			p.order = p.order[1:]
			m := p.pending[name]
			delete(p.pending, name)
			p.mu.Unlock()
			p.o.onChange(m)
			select {
			case <-p.done:
				return
			default:
			}
		}
	}
}

// observe records a change of another member, seen by memberlist. It runs
// under memberlist's node lock, so it neither blocks nor calls memberlist.
func (p *Pool) observe(n *memberlist.Node, state State, updated bool) {
	if n.Name == p.name {
		return
	}
	now := time.Now()
	m := memberFrom(n, state, now)
	if state == StateDead && m.HintErr == nil && m.Hint.Leaving {
		m.State = StateLeft
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if state == StateAlive && m.HintErr != nil {
		p.met.decodeErrors.Inc()
		p.logger.Debug("gossip: a member's hint is unusable", "member", n.Name, "error", m.HintErr)
	}
	if updated {
		p.met.hintUpdates.Inc()
	}
	p.members[n.Name] = &m
	p.updateGaugesLocked()
	if p.o.onChange == nil || p.closed {
		return
	}
	if _, queued := p.pending[n.Name]; !queued {
		p.order = append(p.order, n.Name)
	}
	p.pending[n.Name] = m
	select {
	case p.notify <- struct{}{}:
	default:
	}
}

func (p *Pool) updateGaugesLocked() {
	var counts [3]float64
	if p.leaving {
		counts[StateLeft]++
	} else {
		counts[StateAlive]++
	}
	for _, m := range p.members {
		counts[m.State]++
	}
	for s, n := range counts {
		p.met.members.WithLabelValues(State(s).String()).Set(n)
	}
}

// delegate serves this node's NodeMeta to memberlist. Gossip carries no
// user messages and no extra push/pull state: see the package doc.
type delegate struct{ p *Pool }

var _ memberlist.Delegate = delegate{}

func (d delegate) NodeMeta(limit int) []byte {
	d.p.mu.Lock()
	defer d.p.mu.Unlock()
	if len(d.p.meta) > limit {
		// Unreachable: hints are validated to fit MaxHintSize, which is
		// memberlist's limit. Advertise nothing rather than panic in it.
		return nil
	}
	return slices.Clone(d.p.meta)
}

func (delegate) NotifyMsg([]byte)                           {}
func (delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (delegate) LocalState(join bool) []byte                { return nil }
func (delegate) MergeRemoteState(buf []byte, join bool)     {}

// events turns memberlist's membership events into Members.
type events struct{ p *Pool }

var _ memberlist.EventDelegate = events{}

func (e events) NotifyJoin(n *memberlist.Node)   { e.p.observe(n, StateAlive, false) }
func (e events) NotifyLeave(n *memberlist.Node)  { e.p.observe(n, StateDead, false) }
func (e events) NotifyUpdate(n *memberlist.Node) { e.p.observe(n, StateAlive, true) }
