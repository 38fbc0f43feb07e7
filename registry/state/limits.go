package state

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/cockroachdb/pebble/v2"

	"github.com/mcpmesh/mcpmesh/registry/card"
)

var (
	keyLimits       = []byte("l\x00limits")
	keyLiveReplicas = []byte("r\x00live")
)

// Limit is one rate limit of a BU: a token bucket of Rate refilled
// continuously and holding at most Burst calls, for every tools/call its
// scope matches. The scope is Identity, Tenant, Tool, or Tenant with Tool;
// the fields left empty match every call.
//
// Identity names one agent by principal id, or, ending in "*", every agent
// whose principal id starts with what precedes the "*" ("*" alone: every
// agent); each matching agent gets its own bucket. Tenant names a tenant,
// or "*" for each tenant its own bucket. Tool is "<server>/<tool>" with the
// registry's server name, as kill switches name tools, e.g.
// "corp.finance/ledger/transfer_funds": the /mcp name
// "<namespace>.<tool>" changes when another server adds a tool of the
// same name. A Tool limit is one bucket shared by every caller of the tool.
type Limit struct {
	Identity string `json:"identity,omitempty"`
	Tenant   string `json:"tenant,omitempty"`
	Tool     string `json:"tool,omitempty"`
	// Rate is "<calls>/<unit>", the unit s, m or h: "100/s", "600/m".
	Rate string `json:"rate"`
	// Burst is how many calls may come at once after a quiet spell; at
	// least 1.
	Burst int `json:"burst"`
}

// Scope names the limit's scope: "identity=ID", "tenant=T", "tool=S/T" or
// "tenant=T,tool=S/T". Two limits of one set never share a scope.
func (l Limit) Scope() string {
	var parts []string
	if l.Identity != "" {
		parts = append(parts, "identity="+l.Identity)
	}
	if l.Tenant != "" {
		parts = append(parts, "tenant="+l.Tenant)
	}
	if l.Tool != "" {
		parts = append(parts, "tool="+l.Tool)
	}
	return strings.Join(parts, ",")
}

// ScopeKind is the kind of the limit's scope: "identity", "tenant", "tool"
// or "tenant_tool", a bounded metric label.
func (l Limit) ScopeKind() string {
	switch {
	case l.Identity != "":
		return "identity"
	case l.Tenant != "" && l.Tool != "":
		return "tenant_tool"
	case l.Tenant != "":
		return "tenant"
	}
	return "tool"
}

// Rate is a parsed rate: Count calls per Per.
type Rate struct {
	Count int
	Per   time.Duration
}

// PerSecond is the rate in calls per second.
func (r Rate) PerSecond() float64 { return float64(r.Count) / r.Per.Seconds() }

// String formats the rate as ParseRate reads it.
func (r Rate) String() string {
	unit := "s"
	switch r.Per {
	case time.Minute:
		unit = "m"
	case time.Hour:
		unit = "h"
	}
	return strconv.Itoa(r.Count) + "/" + unit
}

// MaxRateCount bounds the count of a rate and a burst.
const MaxRateCount = 1_000_000_000

// ParseRate reads "<calls>/<unit>": a whole number from 1 to MaxRateCount,
// then s (second), m (minute) or h (hour).
func ParseRate(s string) (Rate, error) {
	num, unit, ok := strings.Cut(strings.TrimSpace(s), "/")
	n, err := strconv.Atoi(strings.TrimSpace(num))
	if !ok || err != nil || n < 1 || n > MaxRateCount {
		return Rate{}, errorf(KindInvalid, "rate %q: want <calls>/<unit> with a whole number of calls from 1 to %d and a unit s, m or h, e.g. 100/s or 600/m", s, MaxRateCount)
	}
	switch strings.TrimSpace(unit) {
	case "s":
		return Rate{n, time.Second}, nil
	case "m":
		return Rate{n, time.Minute}, nil
	case "h":
		return Rate{n, time.Hour}, nil
	}
	return Rate{}, errorf(KindInvalid, "rate %q: unknown unit %q: want s, m or h, e.g. 100/s or 600/m", s, unit)
}

// DefaultBurst is the burst of a limit that declares none: one second's
// worth of calls, at least 1.
func DefaultBurst(r Rate) int {
	b := int(r.PerSecond() + 0.999999)
	return max(b, 1)
}

// ValidateLimit checks one limit: a scope of one of the four kinds with
// well-formed names, a rate ParseRate reads, and a burst from 1 to
// MaxRateCount.
func ValidateLimit(l Limit) error {
	switch {
	case l.Identity == "" && l.Tenant == "" && l.Tool == "":
		return errorf(KindInvalid, "a limit needs a scope: identity, tenant, tool, or tenant and tool")
	case l.Identity != "" && (l.Tenant != "" || l.Tool != ""):
		return errorf(KindInvalid, "limit %s: identity cannot be combined with tenant or tool; declare separate limits (every matching limit applies)", l.Scope())
	}
	if l.Identity != "" {
		if err := validateIdentityPattern(l.Identity); err != nil {
			return err
		}
	}
	if l.Tenant != "" && l.Tenant != "*" {
		if err := ValidateScopedTenant(l.Tenant); err != nil {
			return err
		}
	}
	if l.Tool != "" {
		server, tool, ok := cutLast(l.Tool, "/")
		if !ok || !card.ValidServerName(server) || !card.ValidToolName(tool) {
			return errorf(KindInvalid, "tool %q: want <server>/<tool> with the registry's server name, e.g. corp.finance/ledger/transfer_funds (the /mcp name <namespace>.<tool> is not accepted: it changes when another server adds a tool of that name)", l.Tool)
		}
	}
	if _, err := ParseRate(l.Rate); err != nil {
		return err
	}
	if l.Burst < 1 || l.Burst > MaxRateCount {
		return errorf(KindInvalid, "limit %s: burst %d: want a whole number of calls from 1 to %d", l.Scope(), l.Burst, MaxRateCount)
	}
	return nil
}

// validateIdentityPattern checks a principal id, or a prefix of one
// ending in "*".
func validateIdentityPattern(id string) error {
	if prefix, ok := strings.CutSuffix(id, "*"); ok {
		if strings.Contains(prefix, "*") {
			return errorf(KindInvalid, "identity %q: only a trailing * is allowed (a prefix of principal ids)", id)
		}
		if len(prefix) > maxPrincipalLen {
			return errorf(KindInvalid, "identity %q: longer than %d characters", id, maxPrincipalLen)
		}
		for _, r := range prefix {
			if unicode.IsControl(r) || unicode.IsSpace(r) {
				return errorf(KindInvalid, "identity %q: no spaces or control characters", id)
			}
		}
		return nil
	}
	if strings.Contains(id, "*") {
		return errorf(KindInvalid, "identity %q: only a trailing * is allowed (a prefix of principal ids)", id)
	}
	return validateAgent(id)
}

// ValidateLimits checks every limit and that no two share a scope.
func ValidateLimits(ls []Limit) error {
	seen := map[string]bool{}
	for i, l := range ls {
		if err := ValidateLimit(l); err != nil {
			return errorf(KindInvalid, "limit %d: %s", i+1, err.Error())
		}
		if seen[l.Scope()] {
			return errorf(KindInvalid, "limit %d: scope %s is given twice; declare each scope once", i+1, l.Scope())
		}
		seen[l.Scope()] = true
	}
	return nil
}

// Limits is a BU's rate limit set, replaced as a whole so that every
// replica swaps from one complete set to the next.
type Limits struct {
	// Limits are sorted by scope.
	Limits    []Limit   `json:"limits"`
	UpdatedBy string    `json:"updatedBy,omitempty"`
	UpdatedAt time.Time `json:"updatedAt,omitzero"`
	// ModifyIndex is the Raft index of the change: the set's version.
	ModifyIndex uint64 `json:"modifyIndex"`
}

// PutLimits replaces the rate limit set. An empty Limits removes every
// limit.
type PutLimits struct {
	Limits []Limit   `json:"limits"`
	By     string    `json:"by"`
	At     time.Time `json:"at"`
}

// SortLimits sorts limits by scope, as the registry stores them.
func SortLimits(ls []Limit) {
	slices.SortFunc(ls, func(a, b Limit) int { return cmp.Compare(a.Scope(), b.Scope()) })
}

func (f *FSM) applyPutLimits(b *pebble.Batch, index uint64, c PutLimits) any {
	if err := ValidateLimits(c.Limits); err != nil {
		return err
	}
	ls := slices.Clone(c.Limits)
	if ls == nil {
		ls = []Limit{}
	}
	SortLimits(ls)
	cur, found := mustGet[Limits](b, keyLimits)
	if found && slices.Equal(cur.Limits, ls) {
		return ApplyResult{Index: index, Unchanged: true}
	}
	mustStage(setJSON(b, keyLimits, Limits{Limits: ls, UpdatedBy: c.By, UpdatedAt: c.At, ModifyIndex: index}))
	return ApplyResult{Index: index}
}

// Limits returns the rate limit set; a registry that never had one returns
// the zero Limits (no limits).
func (f *FSM) Limits() (Limits, error) {
	return getOne[Limits](f, keyLimits, func() error { return nil })
}

// LiveReplicas is how many of the BU's voters the leader last saw alive.
// Every replica enforces 1/Count of each rate limit, so that the BU as a
// whole admits the limit, not Count times it.
type LiveReplicas struct {
	// Count is at least 1.
	Count int `json:"count"`
	// Voters is the number of voters in the configuration then.
	Voters int `json:"voters"`
	// Down names the voters the leader could not reach, sorted.
	Down []string `json:"down,omitempty"`
	// Leader is the node that observed it.
	Leader string    `json:"leader"`
	At     time.Time `json:"at"`
	// Index is the Raft index of the change.
	Index uint64 `json:"index"`
}

// SetLiveReplicas records the live replica count. The leader commits it
// only when the count changes.
type SetLiveReplicas struct {
	Count  int       `json:"count"`
	Voters int       `json:"voters"`
	Down   []string  `json:"down,omitempty"`
	Leader string    `json:"leader"`
	At     time.Time `json:"at"`
}

func (f *FSM) applySetLiveReplicas(b *pebble.Batch, index uint64, c SetLiveReplicas) any {
	if c.Count < 1 || c.Voters < c.Count {
		return errorf(KindInvalid, "live replicas %d of %d voters: want 1 ≤ count ≤ voters", c.Count, c.Voters)
	}
	cur, found := mustGet[LiveReplicas](b, keyLiveReplicas)
	if found && cur.Count == c.Count && cur.Voters == c.Voters && slices.Equal(cur.Down, c.Down) {
		return ApplyResult{Index: index, Unchanged: true}
	}
	mustStage(setJSON(b, keyLiveReplicas, LiveReplicas{Count: c.Count, Voters: c.Voters, Down: c.Down, Leader: c.Leader, At: c.At, Index: index}))
	return ApplyResult{Index: index}
}

// LiveReplicas returns the last live replica count the leader committed;
// before the first, Count is 1 and Index 0.
func (f *FSM) LiveReplicas() (LiveReplicas, error) {
	lr, err := getOne[LiveReplicas](f, keyLiveReplicas, func() error { return nil })
	if lr.Count < 1 {
		lr.Count = 1
	}
	return lr, err
}

// String describes the count for logs: "2 of 3 (down: n3)".
func (lr LiveReplicas) String() string {
	s := fmt.Sprintf("%d of %d", lr.Count, lr.Voters)
	if len(lr.Down) > 0 {
		s += " (down: " + strings.Join(lr.Down, ", ") + ")"
	}
	return s
}
