package gossip

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Pool. Every field but Name, Advertise and Join is
// required.
type Config struct {
	// Name is the member's name, unique in the mesh: "<namespace>/<node_id>".
	// Default Hint.Name(); when set it must equal it, so that a member's
	// name and its hint agree.
	Name string
	// Bind is the host:port memberlist listens on, UDP and TCP (the
	// config's federation.gossip.listen). Port 0 picks a free port (tests).
	Bind string
	// Advertise is the host:port other members reach this one at (the
	// config's GossipAdvertise()). A DNS name is resolved once, in New.
	// Default Bind (with its bound port); with Bind on 0.0.0.0 and no
	// Advertise memberlist picks a private address of the host.
	Advertise string
	// Join lists gossip addresses (host:port) of members to join: any
	// nodes of any BU. Empty for the first node of a mesh. A node that
	// reaches none keeps trying in Run, with backoff.
	Join []string
	// Keyring holds the gossip encryption keys (see LoadKeyring); the
	// first is the primary that encrypts, every key decrypts. At least one
	// is required: gossip is never clear text.
	Keyring [][]byte
	// Label is the mesh name (the config's federation.mesh), memberlist's
	// label: it prefixes every packet and stream and is authenticated data
	// of their encryption, so pools with different labels never merge even
	// with the same keys. Required, at most 255 bytes.
	Label string
	// Hint is what the node advertises at start; change it with SetHint.
	Hint Hint
}

// Validate checks the config; the error names the field and what to do.
func (c *Config) Validate() error {
	if err := c.Hint.Validate(); err != nil {
		return err
	}
	if c.Name != "" && c.Name != c.Hint.Name() {
		return fmt.Errorf("gossip: name %q: must be <namespace>/<node_id> of the hint, %q", c.Name, c.Hint.Name())
	}
	if c.Label == "" || len(c.Label) > memberlist.LabelMaxSize {
		return fmt.Errorf("gossip: label %q: want the mesh name (federation.mesh), 1 to %d bytes", c.Label, memberlist.LabelMaxSize)
	}
	if len(c.Keyring) == 0 {
		return errors.New("gossip: keyring: empty; gossip is always encrypted: name a keyring file made with `mcpmesh trust gossip-key` in federation.gossip.keyring_file")
	}
	for i, k := range c.Keyring {
		if err := memberlist.ValidateKey(k); err != nil {
			return fmt.Errorf("gossip: keyring[%d]: %d bytes; want 16, 24 or 32", i, len(k))
		}
	}
	if _, _, err := splitPort(c.Bind); err != nil {
		return fmt.Errorf("gossip: bind %q: %w", c.Bind, err)
	}
	if c.Advertise != "" {
		if _, _, err := splitPort(c.Advertise); err != nil {
			return fmt.Errorf("gossip: advertise %q: %w", c.Advertise, err)
		}
	}
	for i, j := range c.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			return fmt.Errorf("gossip: join[%d] %q: not host:port (%w)", i, j, err)
		}
	}
	return nil
}

func splitPort(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("not host:port (%w)", err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: want a number from 0 to 65535", port)
	}
	return host, int(p), nil
}

// Option configures New.
type Option interface{ apply(*options) }

type options struct {
	logger   *slog.Logger
	reg      prometheus.Registerer
	onChange func(Member)
	tune     func(*memberlist.Config)
	retryMin time.Duration
	retryMax time.Duration
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithLogger sets the logger, memberlist's lines included; the default
// discards.
func WithLogger(l *slog.Logger) Option { return optionFunc(func(o *options) { o.logger = l }) }

// WithMetrics registers the pool's metrics with reg; by default they are
// kept but not registered. memberlist's own metrics (go-metrics) reach
// Prometheus through the binary's global go-metrics sink, as raft's do
// (mcpmesh_memberlist_*).
func WithMetrics(reg prometheus.Registerer) Option {
	return optionFunc(func(o *options) { o.reg = reg })
}

// WithOnChange sets a callback fired when another member joins, fails,
// leaves or changes its hint, with the member as it is after the change
// (Member.Hint is then the new hint, to compare with the versions the
// caller knows). Calls come one at a time from one goroutine, in order;
// changes of one member that pile up while a call runs are coalesced into
// the latest. The local member never fires it.
func WithOnChange(fn func(Member)) Option {
	return optionFunc(func(o *options) { o.onChange = fn })
}

// WithMemberlistConfig lets fn adjust memberlist's configuration after the
// pool has filled it in (memberlist.DefaultWANConfig plus the Config). It
// exists for tests and benchmarks (shorter intervals, a faulty transport);
// a node uses the WAN defaults.
func WithMemberlistConfig(fn func(*memberlist.Config)) Option {
	return optionFunc(func(o *options) { o.tune = fn })
}

// WithJoinBackoff sets how long Run waits between join attempts while the
// node reaches no member: from min, doubling to max. Default 1s to 30s.
func WithJoinBackoff(min, max time.Duration) Option {
	return optionFunc(func(o *options) { o.retryMin, o.retryMax = min, max })
}
