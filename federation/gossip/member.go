package gossip

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
)

// State is a member's liveness as this node sees it.
type State int

// Member states. memberlist keeps a suspected member among the live ones
// and tells no one that it suspects it, so a suspect member shows as
// StateAlive until it is declared dead (tens of seconds on the WAN
// config): route around failures on peer errors, not on this.
const (
	// StateAlive: the member answers, or is not yet declared dead.
	StateAlive State = iota
	// StateDead: the member stopped answering and was declared dead.
	StateDead
	// StateLeft: the member announced it was leaving, then left.
	StateLeft
)

// String returns "alive", "dead" or "left".
func (s State) String() string {
	switch s {
	case StateAlive:
		return "alive"
	case StateDead:
		return "dead"
	case StateLeft:
		return "left"
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// Member is one node of the mesh as this node sees it.
type Member struct {
	// Name is the member's name, "<namespace>/<node_id>" as it claims.
	Name string
	// Addr is the member's gossip address, host:port.
	Addr string
	// State is the member's liveness.
	State State
	// Hint is the member's decoded hint: claims to check, never authority
	// (see Hint). It is the zero Hint when HintErr is set.
	Hint Hint
	// HintErr is why the member's hint could not be used: it did not
	// decode (a newer format, garbage), or it disagrees with the member's
	// name. nil when Hint is good.
	HintErr error
	// Local is true for this node itself.
	Local bool
	// Since is when this node last saw the member's state or hint change.
	Since time.Time
}

// memberFrom builds a Member from memberlist's node, decoding its hint.
func memberFrom(n *memberlist.Node, state State, now time.Time) Member {
	m := Member{
		Name:  n.Name,
		Addr:  net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))),
		State: state,
		Since: now,
	}
	h, err := DecodeHint(n.Meta)
	switch {
	case err != nil:
		m.HintErr = err
	case h.Name() != n.Name:
		m.HintErr = fmt.Errorf("gossip hint: namespace/node id %q disagree with the member name %q", h.Name(), n.Name)
	default:
		m.Hint = h
	}
	return m
}
