package state

import (
	"strings"
	"time"
	"unicode"

	"github.com/cockroachdb/pebble/v2"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpmesh/mcpmesh/registry/card"
	"github.com/mcpmesh/mcpmesh/trust/apikey"
)

var prefixKills = []byte("x\x00")

// killKey is the key of one switch. Names never hold 0x00: they are
// validated to have no control characters.
func killKey(kind KillKind, name string) []byte {
	return []byte("x\x00" + string(kind) + "\x00" + name)
}

// KillKind is what a kill switch stops.
type KillKind string

// The kinds of kill switch.
const (
	// KillTool stops one tool of a server, named "<server>/<tool>", e.g.
	// "corp.finance/ledger/transfer_funds", at every version.
	KillTool KillKind = "tool"
	// KillServer stops a registered server, e.g. "corp.finance/ledger":
	// its tools, resources, prompts and completions, at every version.
	KillServer KillKind = "server"
	// KillTenant stops every agent of a tenant.
	KillTenant KillKind = "tenant"
	// KillAgent stops one agent, by its principal id: a SPIFFE ID,
	// "apikey:<id>", "oidc:<sub>" or "anonymous".
	KillAgent KillKind = "agent"
)

// KillKinds are the four kinds.
var KillKinds = []KillKind{KillTool, KillServer, KillTenant, KillAgent}

// MaxKillReasonLen bounds a kill switch's reason, in bytes.
const MaxKillReasonLen = 1024

// Kill is a pulled kill switch: while it is stored, the gateways of the
// namespace refuse every request it covers. Reviving deletes it.
type Kill struct {
	Kind KillKind `json:"kind"`
	Name string   `json:"name"`
	// Reason says why, for the refused callers and the operators, e.g.
	// "incident 4411: wrong balances".
	Reason string    `json:"reason"`
	By     string    `json:"by"`
	At     time.Time `json:"at"`
	// Index is the Raft index of the command that pulled the switch (or
	// last changed its reason).
	Index uint64 `json:"index"`
}

// PutKill pulls a kill switch, or changes the reason of one already
// pulled.
type PutKill struct {
	Kind   KillKind  `json:"kind"`
	Name   string    `json:"name"`
	Reason string    `json:"reason"`
	By     string    `json:"by"`
	At     time.Time `json:"at"`
}

// Revive releases a kill switch.
type Revive struct {
	Kind KillKind  `json:"kind"`
	Name string    `json:"name"`
	By   string    `json:"by"`
	At   time.Time `json:"at"`
}

// ValidateKillTarget checks a kill switch's kind and that name is well
// formed for it. A tool is named "<server>/<tool>" with the registry's
// server name; the name an agent sees on /mcp ("<namespace>.<tool>") is
// refused, because it changes when another server adds a tool of the
// same name.
func ValidateKillTarget(kind KillKind, name string) error {
	switch kind {
	case KillTool:
		server, tool, ok := cutLast(name, "/")
		if !ok || !card.ValidServerName(server) || !card.ValidToolName(tool) {
			return errorf(KindInvalid, "tool %q: want <server>/<tool> with the registry's server name, e.g. corp.finance/ledger/transfer_funds (the /mcp name <namespace>.<tool> is not accepted: it changes when another server adds a tool of that name)", name)
		}
	case KillServer:
		if !card.ValidServerName(name) {
			return errorf(KindInvalid, "server %q: want a registry server name <namespace>/<server>, e.g. corp.finance/ledger", name)
		}
	case KillTenant:
		return ValidateScopedTenant(name)
	case KillAgent:
		return validateAgent(name)
	default:
		return errorf(KindInvalid, "kill switch kind %q: want tool, server, tenant or agent", kind)
	}
	return nil
}

// validateAgent checks that name is a principal id of one of the forms
// the front door gives agents.
func validateAgent(name string) error {
	if err := ValidatePrincipal(name); err != nil {
		return err
	}
	switch {
	case name == "anonymous":
		return nil
	case strings.HasPrefix(name, "spiffe://"):
		if _, err := spiffeid.FromString(name); err != nil {
			return errorf(KindInvalid, "agent %q: not a valid SPIFFE ID: %v", name, err)
		}
		return nil
	case strings.HasPrefix(name, "apikey:"):
		if !apikey.ValidID(strings.TrimPrefix(name, "apikey:")) {
			return errorf(KindInvalid, "agent %q: an API key's principal is apikey:<id>, the id being 12 characters of a-z and 2-7 (mcpmesh apikey list shows them)", name)
		}
		return nil
	case strings.HasPrefix(name, "oidc:") && len(name) > len("oidc:"):
		return nil
	}
	return errorf(KindInvalid, "agent %q: want a principal id: a SPIFFE ID (spiffe://<trust domain>/agent/...), apikey:<id>, oidc:<subject> or anonymous", name)
}

// ValidateKillReason checks a kill switch's reason: required, at most
// MaxKillReasonLen bytes, no control characters (so, one line).
func ValidateKillReason(reason string) error {
	if strings.TrimSpace(reason) == "" {
		return errorf(KindInvalid, "a reason is required: say why, for the refused callers and the audit, e.g. \"incident 4411: wrong balances\"")
	}
	if len(reason) > MaxKillReasonLen {
		return errorf(KindInvalid, "reason is %d bytes long: shorten it to at most %d", len(reason), MaxKillReasonLen)
	}
	for _, r := range reason {
		if unicode.IsControl(r) {
			return errorf(KindInvalid, "reason must be one line without control characters")
		}
	}
	return nil
}

// cutLast splits s around the last sep.
func cutLast(s, sep string) (before, after string, found bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return s, "", false
}

// applyPutKill checks the switch again, as PutTenant checks its name: the
// admin API refuses bad ones first, so only a hand-made command is refused
// here. These rules are part of what a logged PutKill means: a later
// release may loosen them, never tighten them, or a replayed log would
// apply differently on upgraded replicas.
func (f *FSM) applyPutKill(b *pebble.Batch, index uint64, c PutKill) any {
	if err := ValidateKillTarget(c.Kind, c.Name); err != nil {
		return err
	}
	if err := ValidateKillReason(c.Reason); err != nil {
		return err
	}
	key := killKey(c.Kind, c.Name)
	if prev, found := mustGet[Kill](b, key); found && prev.Reason == c.Reason {
		return ApplyResult{Index: index, Unchanged: true}
	}
	mustStage(setJSON(b, key, Kill{Kind: c.Kind, Name: c.Name, Reason: c.Reason, By: c.By, At: c.At, Index: index}))
	return ApplyResult{Index: index}
}

func (f *FSM) applyRevive(b *pebble.Batch, index uint64, c Revive) any {
	key := killKey(c.Kind, c.Name)
	if _, found := mustGet[Kill](b, key); !found {
		return notKilled(c.Kind, c.Name)
	}
	mustStage(b.Delete(key, nil))
	return ApplyResult{Index: index}
}

func notKilled(kind KillKind, name string) error {
	return errorf(KindNotFound, "%s %s is not killed (mcpmesh kill -list shows the switches pulled)", kind, name)
}

// Kill returns one pulled switch; one not pulled is KindNotFound.
func (f *FSM) Kill(kind KillKind, name string) (Kill, error) {
	return getOne[Kill](f, killKey(kind, name), func() error { return notKilled(kind, name) })
}

// Kills returns every pulled switch, sorted by kind and then name.
func (f *FSM) Kills() ([]Kill, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return scan[Kill](f.db, prefixKills)
}
