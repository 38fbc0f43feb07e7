package cluster

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/mcpmesh/mcpmesh/registry/state"
)

// Cluster RPC operations.
const (
	opApply   = "apply"   // leader only: apply a command
	opBarrier = "barrier" // leader only: commit a no-op, return its index
	opJoin    = "join"    // any member: add a voter (forwarded to the leader)
	opRemove  = "remove"  // leader only: remove a server
	opStatus  = "status"  // any node: report its own view
	opRestore = "restore" // leader only: install an operator snapshot
)

// maxRPCFrame bounds one RPC message; the largest is a forwarded operator
// snapshot (the admin API accepts up to 64 MiB), base64 in JSON.
const maxRPCFrame = 96 << 20

// rpcIdleTimeout closes an idle inbound RPC stream.
const rpcIdleTimeout = 2 * time.Minute

type rpcRequest struct {
	Op      string `json:"op"`
	Command []byte `json:"command,omitempty"`
	ID      string `json:"id,omitempty"`
	Address string `json:"address,omitempty"`
	// Forwarded marks a request a follower passed on to the leader, so it
	// is forwarded at most once.
	Forwarded bool `json:"forwarded,omitempty"`
}

type rpcResponse struct {
	Result *state.ApplyResult `json:"result,omitempty"`
	// StateErr is a refusal by the state machine, returned as is.
	StateErr *state.Error `json:"stateErr,omitempty"`
	// NotLeader means the callee is not the leader: retry elsewhere.
	NotLeader bool `json:"notLeader,omitempty"`
	// Err is any other failure.
	Err    string      `json:"err,omitempty"`
	Index  uint64      `json:"index,omitempty"`
	Status *NodeStatus `json:"status,omitempty"`
}

func writeFrame(w io.Writer, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(body)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err = w.Write(body)
	return err
}

func readFrame(r io.Reader, v any) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxRPCFrame {
		return fmt.Errorf("rpc frame of %d bytes exceeds limit %d", n, maxRPCFrame)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return err
	}
	return json.Unmarshal(body, v)
}

// serveRPC answers requests on one inbound stream until it closes, idles
// out, or the cluster shuts down.
func (c *Cluster) serveRPC(conn net.Conn) {
	c.trackConn(conn, true)
	defer c.trackConn(conn, false)
	br := bufio.NewReader(conn)
	for {
		conn.SetReadDeadline(time.Now().Add(rpcIdleTimeout))
		var req rpcRequest
		if err := readFrame(br, &req); err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				c.logger.Debug("cluster rpc stream ended", "remote", conn.RemoteAddr().String(), "error", err)
			}
			return
		}
		conn.SetReadDeadline(time.Time{})
		resp := c.handleRPC(req)
		conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := writeFrame(conn, resp); err != nil {
			return
		}
	}
}

func (c *Cluster) handleRPC(req rpcRequest) rpcResponse {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.ApplyTimeout)
	defer cancel()
	switch req.Op {
	case opStatus:
		st := c.Status()
		return rpcResponse{Status: &st}
	case opApply:
		res, err := c.applyLocal(req.Command)
		if err == nil {
			c.nudgeFollowers()
		}
		return responseFor(res, err)
	case opBarrier:
		res, err := c.applyLocal(noopCommand)
		if err == nil {
			c.nudgeFollowers()
		}
		return responseFor(res, err)
	case opJoin:
		// A joining node knows only the addresses in its bootstrap.join,
		// which need not be the leader's: a follower passes the request on.
		if !req.Forwarded && !c.IsLeader() {
			if _, addr := c.Leader(); addr != "" {
				req.Forwarded = true
				return responseFor(state.ApplyResult{}, c.forward(ctx, addr, req, nil))
			}
		}
		return responseFor(state.ApplyResult{}, c.addVoterLocal(ctx, req.ID, req.Address))
	case opRemove:
		return responseFor(state.ApplyResult{}, c.removeLocal(req.ID))
	case opRestore:
		return responseFor(state.ApplyResult{}, c.restoreLocal(req.Command))
	}
	return rpcResponse{Err: fmt.Sprintf("unknown cluster rpc %q", req.Op)}
}

// nudgeFollowers makes the forwarding follower learn at once that its
// write is committed. Raft tells followers the commit index only with the
// next AppendEntries, which after the last write comes CommitTimeout to
// twice that later; the follower waits for it (read your writes). A no-op
// appended now, without waiting for it, is replicated immediately and
// carries the new commit index. Only forwarded writes pay for it, so an
// idle cluster sends nothing extra.
func (c *Cluster) nudgeFollowers() {
	c.raft.Apply(noopCommand, c.cfg.ApplyTimeout)
}

func responseFor(res state.ApplyResult, err error) rpcResponse {
	switch {
	case err == nil:
		return rpcResponse{Result: &res, Index: res.Index}
	case errors.Is(err, ErrNotLeader):
		return rpcResponse{NotLeader: true, Err: err.Error()}
	}
	if se, ok := state.AsError(err); ok {
		return rpcResponse{StateErr: se}
	}
	return rpcResponse{Err: err.Error()}
}

// rpcClient keeps a few idle streams per peer address.
type rpcClient struct {
	m       *mux
	timeout time.Duration

	mu   sync.Mutex
	idle map[string][]idleConn
}

type idleConn struct {
	net.Conn
	since time.Time
}

const (
	maxIdlePerPeer = 4
	// maxIdleAge is well under rpcIdleTimeout, so a pooled stream is never
	// one the server has already closed for idleness.
	maxIdleAge = 30 * time.Second
)

func (rc *rpcClient) call(ctx context.Context, addr string, req rpcRequest) (rpcResponse, error) {
	conn, err := rc.get(ctx, addr)
	if err != nil {
		return rpcResponse{}, err
	}
	deadline := time.Now().Add(rc.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetDeadline(deadline)
	// A cancelled caller ends the exchange at once instead of leaving a
	// goroutine blocked until the deadline.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := writeFrame(conn, req); err != nil {
		conn.Close()
		return rpcResponse{}, fmt.Errorf("send %s to %s: %w", req.Op, addr, err)
	}
	var resp rpcResponse
	if err := readFrame(conn, &resp); err != nil {
		conn.Close()
		return rpcResponse{}, fmt.Errorf("read %s reply from %s: %w", req.Op, addr, err)
	}
	if !stop() {
		// The cancel fired after the reply arrived; the deadline it set
		// makes the stream unusable.
		conn.Close()
		return resp, nil
	}
	conn.SetDeadline(time.Time{})
	rc.put(addr, conn)
	return resp, nil
}

func (rc *rpcClient) get(ctx context.Context, addr string) (net.Conn, error) {
	rc.mu.Lock()
	for conns := rc.idle[addr]; len(conns) > 0; conns = rc.idle[addr] {
		c := conns[len(conns)-1]
		rc.idle[addr] = conns[:len(conns)-1]
		if time.Since(c.since) < maxIdleAge {
			rc.mu.Unlock()
			return c.Conn, nil
		}
		c.Close()
	}
	rc.mu.Unlock()
	timeout := rc.timeout
	if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
		timeout = time.Until(d)
	}
	if timeout <= 0 {
		return nil, ctx.Err()
	}
	return rc.m.dial(ctx, addr, protoRPC, timeout)
}

func (rc *rpcClient) put(addr string, c net.Conn) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.idle == nil {
		rc.idle = map[string][]idleConn{}
	}
	if len(rc.idle[addr]) >= maxIdlePerPeer {
		c.Close()
		return
	}
	rc.idle[addr] = append(rc.idle[addr], idleConn{c, time.Now()})
}

func (rc *rpcClient) close() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, conns := range rc.idle {
		for _, c := range conns {
			c.Close()
		}
	}
	rc.idle = nil
}
