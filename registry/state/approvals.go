package state

import (
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/cockroachdb/pebble/v2"
)

// Approvals hold risky calls for a human decision (node/gateway's
// approvals.go). One is requested by the node holding a call, decided by
// an administrator, and consumed, exactly once, by the node that then
// runs the call. Every rule lives here, in the commands, so that all
// replicas agree: times are the commands' own (At), never a replica's
// clock, and consuming is a compare-and-set.

var prefixApprovals = []byte("a\x00")

func approvalKey(id string) []byte { return []byte("a\x00" + id) }

// ApprovalState is where an approval stands in the replicated state.
// Expiry is not stored: an approval is expired from its ExpiresAt on,
// whatever its stored state (see Approval.StateAt).
type ApprovalState string

// The approval states.
const (
	ApprovalPending  ApprovalState = "pending"
	ApprovalApproved ApprovalState = "approved"
	ApprovalDenied   ApprovalState = "denied"
	// ApprovalConsumed is an approved call that a node has run (or is
	// running); it cannot run again.
	ApprovalConsumed ApprovalState = "consumed"
	// ApprovalExpired is never stored: StateAt reports it for a pending or
	// approved approval past its ExpiresAt.
	ApprovalExpired ApprovalState = "expired"
)

// ApprovalStates are the states a list can filter on.
var ApprovalStates = []ApprovalState{ApprovalPending, ApprovalApproved, ApprovalDenied, ApprovalConsumed, ApprovalExpired}

// ApprovalBinding is the exact call an approval is for: it may only run a
// call whose binding is equal.
type ApprovalBinding struct {
	// Caller is the calling principal's id, Tenant its tenant ("" for none).
	Caller string `json:"caller"`
	Tenant string `json:"tenant,omitempty"`
	// Server, Tool and Version name the tool version; DefinitionHash is
	// the definition pinned when the version was approved.
	Server         string `json:"server"`
	Tool           string `json:"tool"`
	Version        string `json:"version"`
	DefinitionHash string `json:"definitionHash"`
	// ArgumentsDigest is the SHA-256 (hex) of the arguments' canonical
	// JSON (RFC 8785).
	ArgumentsDigest string `json:"argumentsDigest"`
	// PolicyVersion is the digest of the policy set that asked for the
	// approval: a new policy set needs a new approval.
	PolicyVersion string `json:"policyVersion"`
}

// Mismatch names the first part of the binding (caller, tool, tool
// version, arguments, policy version) in which want differs, or "" when
// both bind the same call.
func (b ApprovalBinding) Mismatch(want ApprovalBinding) string {
	switch {
	case b.Caller != want.Caller || b.Tenant != want.Tenant:
		return "caller"
	case b.Server != want.Server || b.Tool != want.Tool:
		return "tool"
	case b.Version != want.Version || b.DefinitionHash != want.DefinitionHash:
		return "tool version"
	case b.ArgumentsDigest != want.ArgumentsDigest:
		return "arguments"
	case b.PolicyVersion != want.PolicyVersion:
		return "policy version"
	}
	return ""
}

// Approval is one request for a human decision on one call.
type Approval struct {
	ID string `json:"id"`
	ApprovalBinding
	// Policies are the permit policies whose @approval annotation asked
	// for it.
	Policies []string      `json:"policies,omitempty"`
	State    ApprovalState `json:"state"`
	// RequestedOn is the node that held the call.
	RequestedOn string    `json:"requestedOn,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
	// ExpiresAt ends the approval: it can be decided and consumed only
	// before then.
	ExpiresAt time.Time `json:"expiresAt"`
	DecidedBy string    `json:"decidedBy,omitempty"`
	DecidedAt time.Time `json:"decidedAt,omitzero"`
	// Reason is the decider's, required to deny.
	Reason     string    `json:"reason,omitempty"`
	ConsumedOn string    `json:"consumedOn,omitempty"`
	ConsumedAt time.Time `json:"consumedAt,omitzero"`
	// CreateIndex and ModifyIndex are the Raft indexes that created and
	// last changed it.
	CreateIndex uint64 `json:"createIndex"`
	ModifyIndex uint64 `json:"modifyIndex"`
}

// StateAt is the approval's state at t: its stored state, except that a
// pending or approved approval is expired from ExpiresAt on.
func (a Approval) StateAt(t time.Time) ApprovalState {
	if (a.State == ApprovalPending || a.State == ApprovalApproved) && !t.Before(a.ExpiresAt) {
		return ApprovalExpired
	}
	return a.State
}

// RequestApproval records a pending approval. The node holding the call
// proposes it with a fresh random ID.
type RequestApproval struct {
	ID string `json:"id"`
	ApprovalBinding
	Policies  []string  `json:"policies,omitempty"`
	Node      string    `json:"node,omitempty"`
	At        time.Time `json:"at"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// DecideApproval approves or denies a pending approval.
type DecideApproval struct {
	ID      string    `json:"id"`
	Approve bool      `json:"approve"`
	By      string    `json:"by"`
	Reason  string    `json:"reason,omitempty"`
	At      time.Time `json:"at"`
}

// ConsumeApproval claims an approved approval for the one call its
// binding names, before the upstream sees the call: it succeeds for one
// command only.
type ConsumeApproval struct {
	ID string `json:"id"`
	ApprovalBinding
	Node string    `json:"node,omitempty"`
	At   time.Time `json:"at"`
}

// PruneApprovals deletes the approvals that expired before Before, used
// or not: the leader proposes it now and then so the state stays small.
type PruneApprovals struct {
	Before time.Time `json:"before"`
}

// MaxApprovalReasonLen bounds an approval decision's reason, in bytes.
const MaxApprovalReasonLen = 1024

// ValidApprovalID reports whether id has the form NewApprovalID's caller
// gives: "apr-" then 8 to 64 characters of [a-z0-9].
func ValidApprovalID(id string) bool {
	rest, ok := strings.CutPrefix(id, "apr-")
	if !ok || len(rest) < 8 || len(rest) > 64 {
		return false
	}
	for _, r := range rest {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}

func badApprovalID(id string) error {
	return errorf(KindInvalid, "approval id %q: want apr- and 8 to 64 characters of a-z and 0-9, as the error of the held call gave it (mcpmesh approvals list shows them)", id)
}

func approvalNotFound(id string) error {
	return errorf(KindNotFound, "approval %s does not exist (it may have been pruned after it expired); mcpmesh approvals list shows the approvals", id)
}

// ValidateApprovalReason checks a decision's reason: required to deny, at
// most MaxApprovalReasonLen bytes, one line.
func ValidateApprovalReason(approve bool, reason string) error {
	if !approve && strings.TrimSpace(reason) == "" {
		return errorf(KindInvalid, "a reason is required to deny: say why, for the agent and the audit, e.g. \"amount above the quarterly limit\"")
	}
	if len(reason) > MaxApprovalReasonLen {
		return errorf(KindInvalid, "reason is %d bytes long: shorten it to at most %d", len(reason), MaxApprovalReasonLen)
	}
	for _, r := range reason {
		if unicode.IsControl(r) {
			return errorf(KindInvalid, "reason must be one line without control characters")
		}
	}
	return nil
}

// SamePerson reports whether an administrator (by, the id its admin
// credential gives: an admin SVID's SPIFFE ID, "oidc:<sub>" or
// "token:<name>") is the
// caller of an approval (a principal id: a SPIFFE ID, apikey:<id>,
// oidc:<subject> or anonymous). Identities are compared exactly, after
// trimming a trailing slash: mcpmesh knows no mapping between an admin
// credential and an agent credential, so the same identity string is what
// makes the same person. Changing this rule changes how logged commands
// apply: it may only ever refuse less.
func SamePerson(by, caller string) bool {
	norm := func(s string) string { return strings.TrimSuffix(strings.TrimSpace(s), "/") }
	return by != "" && norm(by) == norm(caller)
}

func (f *FSM) applyRequestApproval(b *pebble.Batch, index uint64, c RequestApproval) any {
	if !ValidApprovalID(c.ID) {
		return badApprovalID(c.ID)
	}
	switch {
	case c.Caller == "":
		return errorf(KindInvalid, "approval %s: the caller is required", c.ID)
	case c.Server == "" || c.Tool == "" || c.Version == "":
		return errorf(KindInvalid, "approval %s: server, tool and version are required", c.ID)
	case c.ArgumentsDigest == "" || c.PolicyVersion == "":
		return errorf(KindInvalid, "approval %s: the arguments digest and policy version are required", c.ID)
	case !c.ExpiresAt.After(c.At):
		return errorf(KindInvalid, "approval %s: expiresAt %s is not after at %s", c.ID, c.ExpiresAt.Format(time.RFC3339), c.At.Format(time.RFC3339))
	}
	key := approvalKey(c.ID)
	if prev, found := mustGet[Approval](b, key); found {
		// A forwarded write retried after a lost reply.
		if prev.Mismatch(c.ApprovalBinding) == "" && prev.CreatedAt.Equal(c.At) {
			return ApplyResult{Index: index, Unchanged: true}
		}
		return errorf(KindConflict, "approval %s already exists for another call", c.ID)
	}
	mustStage(setJSON(b, key, Approval{
		ID: c.ID, ApprovalBinding: c.ApprovalBinding, Policies: c.Policies, State: ApprovalPending,
		RequestedOn: c.Node, CreatedAt: c.At, ExpiresAt: c.ExpiresAt, CreateIndex: index, ModifyIndex: index,
	}))
	return ApplyResult{Index: index}
}

func (f *FSM) applyDecideApproval(b *pebble.Batch, index uint64, c DecideApproval) any {
	if !ValidApprovalID(c.ID) {
		return badApprovalID(c.ID)
	}
	if err := ValidateApprovalReason(c.Approve, c.Reason); err != nil {
		return err
	}
	if c.By == "" {
		return errorf(KindInvalid, "approval %s: who decides is required", c.ID)
	}
	key := approvalKey(c.ID)
	a, found := mustGet[Approval](b, key)
	if !found {
		return approvalNotFound(c.ID)
	}
	want := ApprovalDenied
	if c.Approve {
		want = ApprovalApproved
	}
	// A forwarded write retried after a lost reply.
	if a.State == want && a.DecidedBy == c.By && a.DecidedAt.Equal(c.At) {
		return ApplyResult{Index: index, Unchanged: true}
	}
	if SamePerson(c.By, a.Caller) {
		return errorf(KindConflict, "approval %s: %s made the call and cannot decide it; another administrator must", c.ID, c.By)
	}
	if st := a.StateAt(c.At); st != ApprovalPending {
		return errorf(KindConflict, "approval %s is %s, not pending; %s", c.ID, st, describeApproval(a, c.At))
	}
	a.State, a.DecidedBy, a.DecidedAt, a.Reason, a.ModifyIndex = want, c.By, c.At, c.Reason, index
	mustStage(setJSON(b, key, a))
	return ApplyResult{Index: index}
}

func (f *FSM) applyConsumeApproval(b *pebble.Batch, index uint64, c ConsumeApproval) any {
	if !ValidApprovalID(c.ID) {
		return badApprovalID(c.ID)
	}
	key := approvalKey(c.ID)
	a, found := mustGet[Approval](b, key)
	if !found {
		return approvalNotFound(c.ID)
	}
	if field := a.Mismatch(c.ApprovalBinding); field != "" {
		return errorf(KindConflict, "approval %s is bound to another call (its %s differs); this call needs its own approval", c.ID, field)
	}
	// A forwarded write retried after a lost reply.
	if a.State == ApprovalConsumed && a.ConsumedOn == c.Node && a.ConsumedAt.Equal(c.At) {
		return ApplyResult{Index: index, Unchanged: true}
	}
	if st := a.StateAt(c.At); st != ApprovalApproved {
		return errorf(KindConflict, "approval %s is %s, not approved; %s", c.ID, st, describeApproval(a, c.At))
	}
	a.State, a.ConsumedOn, a.ConsumedAt, a.ModifyIndex = ApprovalConsumed, c.Node, c.At, index
	mustStage(setJSON(b, key, a))
	return ApplyResult{Index: index}
}

func (f *FSM) applyPruneApprovals(b *pebble.Batch, index uint64, c PruneApprovals) any {
	all, err := scan[Approval](b, prefixApprovals)
	if err != nil {
		panic(fmt.Sprintf("registry state: %v", err))
	}
	n := 0
	for _, a := range all {
		if a.ExpiresAt.Before(c.Before) {
			mustStage(b.Delete(approvalKey(a.ID), nil))
			n++
		}
	}
	return ApplyResult{Index: index, Unchanged: n == 0}
}

// describeApproval says in a clause what became of a, at t.
func describeApproval(a Approval, t time.Time) string {
	switch a.StateAt(t) {
	case ApprovalPending:
		return "nobody has decided it yet"
	case ApprovalApproved:
		return fmt.Sprintf("approved by %s", a.DecidedBy)
	case ApprovalDenied:
		return fmt.Sprintf("denied by %s: %q", a.DecidedBy, a.Reason)
	case ApprovalConsumed:
		return fmt.Sprintf("it was already used, on %s at %s", a.ConsumedOn, a.ConsumedAt.UTC().Format(time.RFC3339))
	case ApprovalExpired:
		return fmt.Sprintf("it expired at %s", a.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return ""
}

// Approval returns one approval; an unknown id is KindNotFound.
func (f *FSM) Approval(id string) (Approval, error) {
	if !ValidApprovalID(id) {
		return Approval{}, badApprovalID(id)
	}
	return getOne[Approval](f, approvalKey(id), func() error { return approvalNotFound(id) })
}

// Approvals returns every approval, by id.
func (f *FSM) Approvals() ([]Approval, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return scan[Approval](f.db, prefixApprovals)
}
