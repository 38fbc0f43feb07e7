package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/mcpmesh/mcpmesh/registry/raftstore"
	"github.com/mcpmesh/mcpmesh/registry/state"
)

// ErrNotLeader means this node is not the leader, for operations that only
// a leader performs locally. Callers of Apply never see it: Apply forwards.
var ErrNotLeader = errors.New("not the registry leader")

// ErrNoLeader means no leader was reachable within the hold time; the
// write was not applied. Retry later, or check `mcpmesh members`.
var ErrNoLeader = errors.New("no registry leader reachable (is a majority of nodes up?)")

var noopCommand = mustEncode(state.Noop{})

func mustEncode(cmd any) []byte {
	b, err := state.Encode(cmd)
	if err != nil {
		panic(err)
	}
	return b
}

// Peer is one voter of a new cluster.
type Peer struct {
	ID      string
	Address string
}

// Config configures one replica. Zero durations take the defaults listed.
type Config struct {
	// NodeID is the Raft server ID. Required.
	NodeID string
	// Listen is the node port's listen address. Required unless Listener is set.
	Listen string
	// Listener, if set, is used instead of listening on Listen (tests).
	Listener net.Listener
	// Advertise is the address peers dial. Default: the listener's address.
	Advertise string
	// Dir holds raft/ (log store and snapshots) and state/. Required.
	Dir string
	// ServerTLS and ClientTLS secure the node port; both must require and
	// verify node SVIDs of the trust domain. Required.
	ServerTLS, ClientTLS *tls.Config

	// Peers bootstraps a new cluster with these voters (this node among
	// them) when the data dir holds no Raft state.
	Peers []Peer
	// Join lists node-port addresses of an existing cluster to ask for
	// membership when the data dir holds no Raft state.
	Join []string

	HeartbeatTimeout   time.Duration // default 500ms
	ElectionTimeout    time.Duration // default 500ms
	LeaderLeaseTimeout time.Duration // default 250ms
	CommitTimeout      time.Duration // default 5ms
	SnapshotThreshold  uint64        // default 8192
	SnapshotInterval   time.Duration // default 30s
	SnapshotRetain     int           // default 3
	// ApplyTimeout bounds one write including forwarding and the hold
	// while no leader is known. Default 5s.
	ApplyTimeout time.Duration
	// NoSync disables fsync of the Raft log (tests only).
	NoSync bool
	// APIURL is the base URL of the node's admin API as clients reach it
	// (http(s)://host:port). Optional; reported by Status and Members so
	// that a client can reach every replica, e.g. `audit query -all`.
	APIURL string
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.HeartbeatTimeout, 500*time.Millisecond)
	def(&c.ElectionTimeout, 500*time.Millisecond)
	def(&c.LeaderLeaseTimeout, 250*time.Millisecond)
	def(&c.CommitTimeout, 5*time.Millisecond)
	def(&c.SnapshotInterval, 30*time.Second)
	def(&c.ApplyTimeout, 5*time.Second)
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = 8192
	}
	if c.SnapshotRetain == 0 {
		c.SnapshotRetain = 3
	}
}

// Cluster is one running replica. Its methods are safe for concurrent use.
type Cluster struct {
	cfg    Config
	logger *slog.Logger
	// base is the logger without the component attribute, for raft's own
	// lines (tagged component=raft).
	base *slog.Logger

	FSM   *state.FSM
	raft  *raft.Raft
	store *raftstore.Store
	snaps *raft.FileSnapshotStore
	trans *raft.NetworkTransport
	mux   *mux
	rpc   *rpcClient

	cancel context.CancelFunc
	bg     sync.WaitGroup
	cut    func(peerNodeID string) bool

	connsMu sync.Mutex
	conns   map[net.Conn]struct{}
	closed  bool
}

// Option configures New.
type Option interface{ apply(*options) }

type options struct {
	logger *slog.Logger
	cut    func(peerNodeID string) bool
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return optionFunc(func(o *options) { o.logger = l }) }

// New opens the stores, starts Raft and the node port, and bootstraps or
// joins when the data dir is new. It returns before a leader is elected.
func New(cfg Config, opts ...Option) (*Cluster, error) {
	o := options{logger: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt.apply(&o)
	}
	cfg.setDefaults()
	if cfg.NodeID == "" || cfg.Dir == "" || cfg.ServerTLS == nil || cfg.ClientTLS == nil {
		return nil, errors.New("cluster: NodeID, Dir, ServerTLS and ClientTLS are required")
	}
	c := &Cluster{cfg: cfg, logger: o.logger.With("component", "cluster"), base: o.logger, cut: o.cut, conns: map[net.Conn]struct{}{}}
	if err := c.open(); err != nil {
		// Shutdown copes with whatever open got as far as starting.
		c.Shutdown()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) open() error {
	cfg := c.cfg
	raftDir := filepath.Join(cfg.Dir, "raft")
	if err := os.MkdirAll(raftDir, 0o700); err != nil {
		return fmt.Errorf("create raft dir: %w", err)
	}
	var err error
	c.FSM, err = state.Open(filepath.Join(cfg.Dir, "state"), state.WithLogger(c.logger))
	if err != nil {
		return err
	}
	c.store, err = raftstore.Open(raftstore.Config{Dir: filepath.Join(raftDir, "log"), NoSync: cfg.NoSync}, raftstore.WithLogger(c.logger))
	if err != nil {
		return fmt.Errorf("open raft log: %w", err)
	}
	logs, err := raft.NewLogCache(512, c.store)
	if err != nil {
		return fmt.Errorf("raft log cache: %w", err)
	}
	hl := newHCLogger(c.base, "raft")
	c.snaps, err = raft.NewFileSnapshotStoreWithLogger(raftDir, cfg.SnapshotRetain, hl)
	if err != nil {
		return fmt.Errorf("open snapshot store: %w", err)
	}
	if err := c.catchUpFromSnapshot(); err != nil {
		return err
	}

	ln := cfg.Listener
	if ln == nil {
		ln, err = net.Listen("tcp", cfg.Listen)
		if err != nil {
			return fmt.Errorf("listen on raft address %s: %w", cfg.Listen, err)
		}
	}
	adv := ln.Addr()
	if cfg.Advertise != "" {
		adv, err = net.ResolveTCPAddr("tcp", cfg.Advertise)
		if err != nil {
			ln.Close()
			return fmt.Errorf("resolve advertise address %s: %w", cfg.Advertise, err)
		}
	}
	c.mux = newMux(ln, adv, cfg.ServerTLS, cfg.ClientTLS, c.logger)
	c.mux.handleRPC = c.serveRPC
	c.mux.cut = c.cut
	c.rpc = &rpcClient{m: c.mux, timeout: cfg.ApplyTimeout}
	c.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  c.mux,
		MaxPool: 4,
		// 1 turns pipelined replication off. In raft v1.8 a pipeline can
		// deadlock: when its response decoder stops (a follower refused an
		// entry, or answered with a newer term) while the sender waits to
		// hand it the next request, neither ever returns, and the leader's
		// replication to that follower, and its shutdown, hang for good
		// (seen in the cluster tests under -race). Synchronous replication
		// costs little: hashicorp/raft#541 measured pipelining as of no
		// benefit with batching, which the registry's writes get.
		MaxRPCsInFlight: 1,
		Timeout:         10 * time.Second,
		Logger:          hl,
	})

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = 10240
	// The state is persistent and records its applied index, so a restart
	// replays only what it lacks instead of reloading a whole snapshot.
	rc.NoSnapshotRestoreOnStart = true
	rc.Logger = hl
	if err := raft.ValidateConfig(rc); err != nil {
		return fmt.Errorf("raft config: %w", err)
	}

	existing, err := raft.HasExistingState(logs, c.store, c.snaps)
	if err != nil {
		return fmt.Errorf("inspect raft state: %w", err)
	}
	if !existing && len(cfg.Peers) > 0 {
		var servers []raft.Server
		for _, p := range cfg.Peers {
			servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Address)})
		}
		if err := raft.BootstrapCluster(rc, logs, c.store, c.snaps, c.trans, raft.Configuration{Servers: servers}); err != nil {
			return fmt.Errorf("bootstrap cluster: %w", err)
		}
		c.logger.Info("bootstrapped new cluster", "voters", len(servers))
	}
	c.raft, err = raft.NewRaft(rc, c.FSM, logs, c.store, c.snaps, c.trans)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.mux.start()
	if !existing && len(cfg.Peers) == 0 && len(cfg.Join) > 0 {
		c.bg.Add(1)
		go c.runJoin(ctx)
	}
	return nil
}

// catchUpFromSnapshot restores the state from the newest snapshot when the
// state is behind it (its directory was lost or replaced), because Raft
// only replays the log after the snapshot.
func (c *Cluster) catchUpFromSnapshot() error {
	metas, err := c.snaps.List()
	if err != nil || len(metas) == 0 {
		return err
	}
	if metas[0].Index <= c.FSM.AppliedIndex() {
		return nil
	}
	_, rc, err := c.snaps.Open(metas[0].ID)
	if err != nil {
		return fmt.Errorf("open snapshot %s: %w", metas[0].ID, err)
	}
	c.logger.Warn("registry state is behind the newest snapshot; restoring it", "state_index", c.FSM.AppliedIndex(), "snapshot_index", metas[0].Index)
	return c.FSM.Restore(rc)
}

// runJoin is the join goroutine's body, owned by c.bg.
func (c *Cluster) runJoin(ctx context.Context) {
	defer c.bg.Done()
	c.joinLoop(ctx)
}

func (c *Cluster) joinLoop(ctx context.Context) {
	backoff := 200 * time.Millisecond
	for {
		for _, addr := range c.cfg.Join {
			err := c.forward(ctx, addr, rpcRequest{Op: opJoin, ID: c.cfg.NodeID, Address: c.mux.Addr().String()}, nil)
			if err == nil {
				c.logger.Info("joined cluster", "via", addr)
				return
			}
			c.logger.Warn("join attempt failed; retrying", "via", addr, "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// Shutdown stops Raft and the node port and closes the stores. If this node
// leads, it first hands leadership to another voter so writes pause for
// as short a time as possible.
func (c *Cluster) Shutdown() error {
	if c.raft != nil && c.raft.State() == raft.Leader && c.numVoters() > 1 {
		if err := c.raft.LeadershipTransfer().Error(); err != nil {
			c.logger.Warn("leadership transfer before shutdown failed", "error", err)
		}
	}
	if c.cancel != nil {
		c.cancel()
	}
	var errs []error
	var stopped raft.Future
	if c.raft != nil {
		stopped = c.raft.Shutdown()
	}
	// Raft's shutdown future waits for its workers before it closes the
	// transport, so a replication worker blocked on a peer's RPC would hold
	// shutdown for the whole transport timeout, and two replicas shutting
	// down at once can each wait on the other. Closing the transport (and
	// with it the node port's connections) first fails such RPCs at once.
	if c.trans != nil {
		errs = append(errs, c.trans.Close())
	}
	if stopped != nil {
		errs = append(errs, stopped.Error())
	}
	c.connsMu.Lock()
	c.closed = true
	for conn := range c.conns {
		conn.Close()
	}
	c.connsMu.Unlock()
	if c.mux != nil {
		c.mux.Close()
		c.mux.wait()
	}
	if c.rpc != nil {
		c.rpc.close()
	}
	c.bg.Wait()
	errs = append(errs, c.closeStores())
	return errors.Join(errs...)
}

func (c *Cluster) closeStores() error {
	var errs []error
	if c.store != nil {
		errs = append(errs, c.store.Close())
	}
	if c.FSM != nil {
		errs = append(errs, c.FSM.Close())
	}
	return errors.Join(errs...)
}

func (c *Cluster) trackConn(conn net.Conn, add bool) {
	c.connsMu.Lock()
	defer c.connsMu.Unlock()
	if !add {
		delete(c.conns, conn)
		return
	}
	if c.closed {
		conn.Close()
		return
	}
	c.conns[conn] = struct{}{}
}

func (c *Cluster) numVoters() int {
	f := c.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	n := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			n++
		}
	}
	return n
}

// Apply commits an encoded command (see state.Encode) and returns its
// result. On a follower it forwards to the leader; while no leader is
// known it holds and retries until ApplyTimeout. Commands are idempotent,
// so a retry after a lost reply cannot apply one twice. It returns once
// this replica's state has applied the write too, so a read that follows
// sees it.
func (c *Cluster) Apply(ctx context.Context, cmd []byte) (state.ApplyResult, error) {
	var res state.ApplyResult
	err := c.leaderDo(ctx, rpcRequest{Op: opApply, Command: cmd}, func() error {
		var err error
		res, err = c.applyLocal(cmd)
		return err
	}, &res)
	if err != nil {
		return res, err
	}
	// Read your writes: a forwarded write is committed on the leader before
	// this replica applies it, and callers (the admin API) read the result
	// from the local state next. Wait until it is here.
	wctx, cancel := context.WithTimeout(ctx, c.cfg.ApplyTimeout)
	defer cancel()
	if err := c.FSM.WaitApplied(wctx, res.Index); err != nil {
		return res, fmt.Errorf("write committed at index %d but not yet applied on this node: %w", res.Index, err)
	}
	return res, nil
}

// Barrier returns once this node's state reflects every write committed
// before the call, on any replica: the basis of consistent reads. It
// commits a no-op through the leader and waits to apply it locally.
func (c *Cluster) Barrier(ctx context.Context) error {
	var res state.ApplyResult
	err := c.leaderDo(ctx, rpcRequest{Op: opBarrier}, func() error {
		var err error
		res, err = c.applyLocal(noopCommand)
		return err
	}, &res)
	if err != nil {
		return err
	}
	return c.FSM.WaitApplied(ctx, res.Index)
}

// AddVoter adds a node to the cluster (through the leader). It returns
// once this replica's configuration shows the change too, or ApplyTimeout
// passes.
func (c *Cluster) AddVoter(ctx context.Context, id, addr string) error {
	err := c.leaderDo(ctx, rpcRequest{Op: opJoin, ID: id, Address: addr}, func() error {
		return c.addVoterLocal(ctx, id, addr)
	}, nil)
	if err != nil {
		return err
	}
	c.awaitConfiguration(ctx)
	return nil
}

// RemoveServer removes a node from the cluster (through the leader). It
// returns once this replica's configuration shows the change too, or
// ApplyTimeout passes.
func (c *Cluster) RemoveServer(ctx context.Context, id string) error {
	err := c.leaderDo(ctx, rpcRequest{Op: opRemove, ID: id}, func() error {
		return c.removeLocal(id)
	}, nil)
	if err != nil {
		return err
	}
	c.awaitConfiguration(ctx)
	return nil
}

// awaitConfiguration waits until this replica has caught up with the
// leader's log, so that a membership change just made through the leader
// shows in the member list it answers with (a follower learns of the change
// only with the next replication). It is best effort and bounded by
// ApplyTimeout: the change itself is done either way, and a node that
// removed itself never catches up.
func (c *Cluster) awaitConfiguration(ctx context.Context) {
	if c.IsLeader() {
		return
	}
	bctx, cancel := context.WithTimeout(ctx, c.cfg.ApplyTimeout)
	defer cancel()
	if err := c.Barrier(bctx); err != nil {
		c.logger.Debug("membership changed; this replica has not caught up yet", "error", err)
	}
}

// leaderDo runs local on the leader, or sends req to the leader, holding
// and retrying while there is none or it moves.
func (c *Cluster) leaderDo(ctx context.Context, req rpcRequest, local func() error, res *state.ApplyResult) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ApplyTimeout)
	defer cancel()
	wait := 10 * time.Millisecond
	var last error
	for {
		var err error
		if c.raft.State() == raft.Leader {
			err = local()
		} else if addr, _ := c.raft.LeaderWithID(); addr != "" {
			err = c.forwardAttempt(ctx, string(addr), req, res)
		} else {
			err = ErrNotLeader
		}
		if err == nil || !retryable(err) {
			return err
		}
		last = err
		select {
		case <-ctx.Done():
			if errors.Is(last, ErrNotLeader) {
				return fmt.Errorf("%w (waited %s)", ErrNoLeader, c.cfg.ApplyTimeout)
			}
			return fmt.Errorf("%w: last error: %v", ErrNoLeader, last)
		case <-time.After(wait):
		}
		// A short cap: once a new leader is known the next try should go
		// out promptly (a failover is otherwise paid for twice).
		wait = min(wait*2, 25*time.Millisecond)
	}
}

// forwardAttempt forwards one try with its own deadline, so that a leader
// that hangs (a frozen process, a partitioned host) costs one attempt, not
// the whole hold time: the next try goes to whichever leader Raft elects
// meanwhile. A restore may legitimately take long and gets the full time.
func (c *Cluster) forwardAttempt(ctx context.Context, addr string, req rpcRequest, res *state.ApplyResult) error {
	if req.Op != opRestore {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, max(2*c.cfg.HeartbeatTimeout, time.Second))
		defer cancel()
	}
	return c.forward(ctx, addr, req, res)
}

// retryable reports whether an error leaves the request safe and useful to
// send again: not-leader answers and transport failures. Refusals by the
// state machine are final.
func retryable(err error) bool {
	if _, ok := state.AsError(err); ok {
		return false
	}
	return true
}

func (c *Cluster) forward(ctx context.Context, addr string, req rpcRequest, res *state.ApplyResult) error {
	resp, err := c.rpc.call(ctx, addr, req)
	if err != nil {
		return err
	}
	switch {
	case resp.NotLeader:
		return ErrNotLeader
	case resp.StateErr != nil:
		return resp.StateErr
	case resp.Err != "":
		return errors.New(resp.Err)
	}
	if res != nil && resp.Result != nil {
		*res = *resp.Result
	}
	return nil
}

func (c *Cluster) applyLocal(cmd []byte) (state.ApplyResult, error) {
	if c.raft.State() != raft.Leader {
		return state.ApplyResult{}, ErrNotLeader
	}
	f := c.raft.Apply(cmd, c.cfg.ApplyTimeout)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return state.ApplyResult{}, ErrNotLeader
		}
		return state.ApplyResult{}, fmt.Errorf("raft apply: %w", err)
	}
	switch r := f.Response().(type) {
	case state.ApplyResult:
		return r, nil
	case *state.Error:
		return state.ApplyResult{}, r
	case error:
		return state.ApplyResult{}, r
	}
	return state.ApplyResult{}, fmt.Errorf("raft apply: unexpected response %T", f.Response())
}

func (c *Cluster) addVoterLocal(ctx context.Context, id, addr string) error {
	if c.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	if id == "" || addr == "" {
		return errors.New("join: node id and address are required")
	}
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	var stale []raft.ServerID
	for _, s := range f.Configuration().Servers {
		if s.ID == raft.ServerID(id) && s.Address == raft.ServerAddress(addr) {
			return nil // already a member
		}
		if s.ID == raft.ServerID(id) || s.Address == raft.ServerAddress(addr) {
			stale = append(stale, s.ID)
		}
	}
	// Before a node gets a vote, check who answers at its address: mTLS
	// proves a node of this trust domain, and its SVID must name this id.
	// An address with nothing behind it, or with another node, would
	// otherwise become a voter that lowers the cluster's fault tolerance.
	got, err := c.mux.peerNodeID(ctx, addr, 5*time.Second)
	if err != nil {
		return &state.Error{Kind: state.KindInvalid, Message: fmt.Sprintf("cannot verify node %s at %s (start the node first; it must hold a node SVID of this trust domain): %v", id, addr, err)}
	}
	if got != id {
		return &state.Error{Kind: state.KindInvalid, Message: fmt.Sprintf("the node at %s is %q, not %q; check the id and address", addr, got, id)}
	}
	// Same ID at a new address, or a new ID at an old address: the stale
	// entry goes before the verified node joins.
	for _, sid := range stale {
		if err := c.raft.RemoveServer(sid, 0, c.cfg.ApplyTimeout).Error(); err != nil {
			return fmt.Errorf("remove stale server %s: %w", sid, err)
		}
	}
	if err := c.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, c.cfg.ApplyTimeout).Error(); err != nil {
		return fmt.Errorf("add voter %s: %w", id, err)
	}
	c.logger.Info("added voter", "id", id, "address", addr)
	return nil
}

func (c *Cluster) removeLocal(id string) error {
	if c.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	for _, s := range f.Configuration().Servers {
		if s.ID == raft.ServerID(id) {
			if err := c.raft.RemoveServer(s.ID, 0, c.cfg.ApplyTimeout).Error(); err != nil {
				return fmt.Errorf("remove server %s: %w", id, err)
			}
			c.logger.Info("removed server", "id", id)
			return nil
		}
	}
	return &state.Error{Kind: state.KindNotFound, Message: fmt.Sprintf("node %s is not a member of the cluster", id)}
}

// IsLeader reports whether this node is the leader.
func (c *Cluster) IsLeader() bool { return c.raft.State() == raft.Leader }

// Leader returns the leader's ID and node-port address, empty if unknown.
func (c *Cluster) Leader() (id, addr string) {
	a, i := c.raft.LeaderWithID()
	return string(i), string(a)
}

// Ready reports whether this replica knows a leader, is a member, and has
// applied everything it knows to be committed. The reason says what is
// missing.
func (c *Cluster) Ready() (bool, string) {
	if id, _ := c.Leader(); id == "" {
		return false, "no leader known"
	}
	if c.raft.AppliedIndex() < c.raft.CommitIndex() {
		return false, fmt.Sprintf("applying committed entries (%d of %d)", c.raft.AppliedIndex(), c.raft.CommitIndex())
	}
	return true, ""
}

// NodeStatus is one node's own view of the cluster.
type NodeStatus struct {
	ID           string    `json:"id"`
	Address      string    `json:"address"`
	State        string    `json:"state"`
	Leader       string    `json:"leader"`
	Term         uint64    `json:"term"`
	CommitIndex  uint64    `json:"commitIndex"`
	AppliedIndex uint64    `json:"appliedIndex"`
	LastContact  time.Time `json:"lastContact,omitzero"`
	APIURL       string    `json:"apiUrl,omitempty"`
}

// Status returns this node's own view.
func (c *Cluster) Status() NodeStatus {
	leader, _ := c.Leader()
	st := NodeStatus{
		ID:           c.cfg.NodeID,
		Address:      c.mux.Addr().String(),
		State:        c.raft.State().String(),
		Leader:       leader,
		Term:         c.raft.CurrentTerm(),
		CommitIndex:  c.raft.CommitIndex(),
		AppliedIndex: c.raft.AppliedIndex(),
		APIURL:       c.cfg.APIURL,
	}
	if c.raft.State() == raft.Leader {
		st.LastContact = time.Now()
	} else {
		st.LastContact = c.raft.LastContact()
	}
	return st
}

// Member is one server of the Raft configuration with what it reports.
type Member struct {
	ID       string `json:"id"`
	Address  string `json:"address"`
	Suffrage string `json:"suffrage"`
	// Role is Leader, Follower or Candidate as the member itself reports
	// it, or "unreachable".
	Role string `json:"role"`
	// LastContact is when the member last heard from the leader (the
	// leader reports now); zero if unreachable.
	LastContact  time.Time `json:"lastContact,omitzero"`
	AppliedIndex uint64    `json:"appliedIndex"`
	// APIURL is the member's admin API base URL as it reports it; empty
	// when it is unreachable (or does not report one).
	APIURL string `json:"apiUrl,omitempty"`
	Error  string `json:"error,omitempty"`
}

// Members lists the Raft configuration and asks each member for its status.
func (c *Cluster) Members(ctx context.Context) ([]Member, error) {
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("read raft configuration: %w", err)
	}
	servers := f.Configuration().Servers
	out := make([]Member, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		out[i] = Member{ID: string(s.ID), Address: string(s.Address), Suffrage: s.Suffrage.String()}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var st NodeStatus
			if s.ID == raft.ServerID(c.cfg.NodeID) {
				st = c.Status()
			} else {
				cctx, cancel := context.WithTimeout(ctx, time.Second)
				defer cancel()
				resp, err := c.rpc.call(cctx, string(s.Address), rpcRequest{Op: opStatus})
				if err != nil || resp.Status == nil {
					out[i].Role = "unreachable"
					if err != nil {
						out[i].Error = err.Error()
					}
					return
				}
				st = *resp.Status
			}
			out[i].Role, out[i].LastContact, out[i].AppliedIndex, out[i].APIURL = st.State, st.LastContact, st.AppliedIndex, st.APIURL
		}()
	}
	wg.Wait()
	return out, nil
}

// SaveSnapshot writes this node's current state in snapshot format. Call
// Barrier first for a state that includes every committed write.
func (c *Cluster) SaveSnapshot(w io.Writer) error { return c.FSM.WriteSnapshot(w) }

// RestoreSnapshot replaces the whole namespace state with a snapshot. The
// snapshot is checked here, then installed through the leader's Raft, so
// every replica ends up with it.
func (c *Cluster) RestoreSnapshot(ctx context.Context, r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("restore: read snapshot: %w", err)
	}
	if _, err := state.ReadSnapshot(bytes.NewReader(data)); err != nil {
		return err
	}
	return c.leaderDo(ctx, rpcRequest{Op: opRestore, Command: data}, func() error {
		return c.restoreLocal(data)
	}, nil)
}

func (c *Cluster) restoreLocal(data []byte) error {
	if c.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	if _, err := state.ReadSnapshot(bytes.NewReader(data)); err != nil {
		return &state.Error{Kind: state.KindInvalid, Message: err.Error()}
	}
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Size: int64(len(data))}
	if err := c.raft.Restore(meta, bytes.NewReader(data), 30*time.Second); err != nil {
		return fmt.Errorf("restore through raft: %w", err)
	}
	c.logger.Warn("registry restored from an operator snapshot", "bytes", len(data))
	return nil
}
