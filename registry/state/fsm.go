package state

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mcpmesh/mcpmesh/internal/pebblelog"
	"github.com/mcpmesh/mcpmesh/internal/pebblesched"
	"github.com/mcpmesh/mcpmesh/registry/card"
)

// Key layout: one prefix byte per keyspace, then fields separated by 0x00
// (server names and versions never contain it).
var (
	keyApplied     = []byte("m\x00applied")
	prefixVersions = []byte("v\x00")
	prefixTenants  = []byte("n\x00")
)

func versionKey(server, version string) []byte {
	return []byte("v\x00" + server + "\x00" + version)
}

func toolKey(server, version, tool string) []byte {
	return []byte("t\x00" + server + "\x00" + version + "\x00" + tool)
}

func tenantKey(name string) []byte { return []byte("n\x00" + name) }

// FSM is the registry state machine of one namespace. It implements
// raft.FSM; reads are safe for concurrent use with Apply and Restore.
type FSM struct {
	db     *pebble.DB
	logger *slog.Logger

	// mu keeps readers out while Restore swaps the whole state.
	mu sync.RWMutex

	// applied is the Raft index of the last entry the state reflects.
	applied Watermark
	// restores counts snapshots restored (which may move applied back):
	// with applied it says which state a memo's values were read from.
	restores atomic.Uint64

	// Reads every call makes, remembered per applied index (memo.go).
	apiKeys          memo[APIKey]
	tenantUsage      memo[TenantUsage]
	exportedCatalogs memo[ExportedCatalog]
}

var (
	_ raft.FSM         = (*FSM)(nil)
	_ raft.BatchingFSM = (*FSM)(nil)
	_ raft.FSMSnapshot = (*fsmSnapshot)(nil)
)

// Option configures Open.
type Option interface{ apply(*options) }

type options struct {
	logger *slog.Logger
	fs     vfs.FS
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return optionFunc(func(o *options) { o.logger = l }) }

// WithFS sets pebble's filesystem, for tests (vfs.NewMem).
func WithFS(fs vfs.FS) Option { return optionFunc(func(o *options) { o.fs = fs }) }

// Open opens (or creates) the state database in dir.
func Open(dir string, opts ...Option) (*FSM, error) {
	o := options{logger: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt.apply(&o)
	}
	popts := &pebble.Options{Logger: pebblelog.New(o.logger, "state")}
	popts.Experimental.CompactionScheduler = pebblesched.New()
	if o.fs != nil {
		popts.FS = o.fs
	}
	db, err := pebble.Open(dir, popts)
	if err != nil {
		return nil, fmt.Errorf("open registry state %s: %w", dir, err)
	}
	f := &FSM{db: db, logger: o.logger}
	idx, err := f.readApplied()
	if err != nil {
		db.Close()
		return nil, err
	}
	f.applied.Reset(idx)
	return f, nil
}

// Close closes the database.
func (f *FSM) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.db.Close()
}

func (f *FSM) readApplied() (uint64, error) {
	v, closer, err := f.db.Get(keyApplied)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read applied index: %w", err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("read applied index: corrupt value of %d bytes", len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// AppliedIndex is the Raft index of the last entry reflected in the state.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// WaitApplied blocks until the state reflects index or ctx ends.
func (f *FSM) WaitApplied(ctx context.Context, index uint64) error {
	if cur, err := f.applied.Wait(ctx, index); err != nil {
		return fmt.Errorf("wait for index %d (applied %d): %w", index, cur, err)
	}
	return nil
}

// Apply applies one committed log entry.
func (f *FSM) Apply(l *raft.Log) any {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch applies committed entries in one pebble batch. Entries at or
// below the applied index (replayed after a restart) are skipped.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]any, len(logs))
	b := f.db.NewIndexedBatch()
	defer b.Close()
	applied := f.AppliedIndex()
	last := applied
	for i, l := range logs {
		if l.Index <= applied {
			out[i] = ApplyResult{Index: l.Index, Unchanged: true}
			continue
		}
		last = l.Index
		if l.Type != raft.LogCommand {
			out[i] = ApplyResult{Index: l.Index, Unchanged: true}
			continue
		}
		out[i] = f.applyCommand(b, l)
		if len(l.Data) > 0 {
			f.markCatalogs(b, l.Index, CommandType(l.Data[0]), out[i])
		}
	}
	if last == applied {
		return out
	}
	var idx [8]byte
	binary.BigEndian.PutUint64(idx[:], last)
	if err := b.Set(keyApplied, idx[:], nil); err != nil {
		panic(fmt.Sprintf("registry state: stage applied index: %v", err))
	}
	// A failed commit leaves the state behind the Raft log; carrying on
	// would answer reads from a state that silently lacks entries.
	if err := b.Commit(pebble.NoSync); err != nil {
		panic(fmt.Sprintf("registry state: commit batch up to index %d: %v", last, err))
	}
	f.applied.Raise(last)
	return out
}

func (f *FSM) applyCommand(b *pebble.Batch, l *raft.Log) any {
	if len(l.Data) == 0 {
		return errorf(KindInvalid, "empty command at index %d", l.Index)
	}
	t, body := CommandType(l.Data[0]), l.Data[1:]
	switch t {
	case CmdSubmitVersion:
		return applyJSON(b, l.Index, t, body, f.applySubmit)
	case CmdTransition:
		return applyJSON(b, l.Index, t, body, f.applyTransition)
	case CmdPutTenant:
		return applyJSON(b, l.Index, t, body, f.applyPutTenant)
	case CmdCreateAPIKey:
		return applyJSON(b, l.Index, t, body, f.applyCreateAPIKey)
	case CmdRevokeAPIKey:
		return applyJSON(b, l.Index, t, body, f.applyRevokeAPIKey)
	case CmdPutProfile:
		return applyJSON(b, l.Index, t, body, f.applyPutProfile)
	case CmdDeleteProfile:
		return applyJSON(b, l.Index, t, body, f.applyDeleteProfile)
	case CmdPutPolicies:
		return applyJSON(b, l.Index, t, body, f.applyPutPolicies)
	case CmdRotateSigningKey:
		return applyJSON(b, l.Index, t, body, f.applyRotateSigningKey)
	case CmdDeleteSigningKey:
		return applyJSON(b, l.Index, t, body, f.applyDeleteSigningKey)
	case CmdPutKill:
		return applyJSON(b, l.Index, t, body, f.applyPutKill)
	case CmdRevive:
		return applyJSON(b, l.Index, t, body, f.applyRevive)
	case CmdCheckpointAudit:
		return applyJSON(b, l.Index, t, body, f.applyCheckpointAudit)
	case CmdPutLimits:
		return applyJSON(b, l.Index, t, body, f.applyPutLimits)
	case CmdSetLiveReplicas:
		return applyJSON(b, l.Index, t, body, f.applySetLiveReplicas)
	case CmdPutQuotas:
		return applyJSON(b, l.Index, t, body, f.applyPutQuotas)
	case CmdFlushUsage:
		return applyJSON(b, l.Index, t, body, f.applyFlushUsage)
	case CmdRequestApproval:
		return applyJSON(b, l.Index, t, body, f.applyRequestApproval)
	case CmdDecideApproval:
		return applyJSON(b, l.Index, t, body, f.applyDecideApproval)
	case CmdConsumeApproval:
		return applyJSON(b, l.Index, t, body, f.applyConsumeApproval)
	case CmdPruneApprovals:
		return applyJSON(b, l.Index, t, body, f.applyPruneApprovals)
	case CmdPutManifest:
		return applyJSON(b, l.Index, t, body, f.applyPutManifest)
	case CmdPutExports:
		return applyJSON(b, l.Index, t, body, f.applyPutExports)
	case CmdPutImports:
		return applyJSON(b, l.Index, t, body, f.applyPutImports)
	case CmdPutPeerStatus:
		return applyJSON(b, l.Index, t, body, f.applyPutPeerStatus)
	case CmdPutBundle:
		return applyJSON(b, l.Index, t, body, f.applyPutBundle)
	case CmdDeleteBundle:
		return applyJSON(b, l.Index, t, body, f.applyDeleteBundle)
	case CmdNoop:
		return ApplyResult{Index: l.Index, Unchanged: true}
	}
	if t&IgnorableFlag != 0 {
		f.logger.Warn("skipping unknown ignorable registry command; upgrade this node", "type", uint8(t), "index", l.Index)
		return ApplyResult{Index: l.Index, Unchanged: true}
	}
	// Applying the rest of the log without this entry would fork this
	// replica from its peers; stopping is the only safe answer.
	panic(fmt.Sprintf("registry state: unknown command type %d at index %d: this node is older than the leader; upgrade it", uint8(t), l.Index))
}

// applyJSON decodes a command's body and applies it.
func applyJSON[C any](b *pebble.Batch, index uint64, t CommandType, body []byte, apply func(*pebble.Batch, uint64, C) any) any {
	var c C
	if err := json.Unmarshal(body, &c); err != nil {
		return errorf(KindInvalid, "decode %s command: %v", t, err)
	}
	return apply(b, index, c)
}

func getJSON[T any](r pebble.Reader, key []byte) (T, bool, error) {
	var v T
	raw, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return v, false, nil
	}
	if err != nil {
		return v, false, err
	}
	defer closer.Close()
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, false, fmt.Errorf("decode %q: %w", key, err)
	}
	return v, true, nil
}

// mustGet reads a value inside a batch being applied. A failed read of
// the state cannot be answered by refusing the command (the other replicas
// would apply it), so it stops the node like any other apply failure.
func mustGet[T any](b *pebble.Batch, key []byte) (T, bool) {
	v, found, err := getJSON[T](b, key)
	if err != nil {
		panic(fmt.Sprintf("registry state: read %q: %v", key, err))
	}
	return v, found
}

func setJSON(b *pebble.Batch, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Set(key, raw, nil)
}

// mustStage panics on a failed write to an in-memory batch, which only
// happens when the batch is closed or corrupt: a bug, not bad input.
func mustStage(err error) {
	if err != nil {
		panic(fmt.Sprintf("registry state: stage write: %v", err))
	}
}

func (f *FSM) applySubmit(b *pebble.Batch, index uint64, c SubmitVersion) any {
	// The card was fully validated before it was proposed. Here it is only
	// decoded, never re-validated: validation rules may tighten in a later
	// release, and a replayed log must apply the same way on every version.
	var cd card.Card
	if err := json.Unmarshal(c.Card, &cd); err != nil {
		return errorf(KindInvalid, "decode server card: %v", err)
	}
	if cd.Name == "" || cd.Version == "" {
		return errorf(KindInvalid, "server card lacks name or version")
	}
	cardHash, err := card.CanonicalHash(c.Card)
	if err != nil {
		return errorf(KindInvalid, "hash server card: %v", err)
	}
	key := versionKey(cd.Name, cd.Version)
	existing, found := mustGet[ServerVersion](b, key)
	if found {
		if existing.CardHash == cardHash {
			return ApplyResult{Index: index, Unchanged: true}
		}
		return errorf(KindConflict, "%s@%s was already submitted with a different card; versions are immutable, so submit a new version", cd.Name, cd.Version)
	}
	var gov card.Governance
	if raw, ok := cd.Meta[card.GovernanceKey]; ok {
		if err := json.Unmarshal(raw, &gov); err != nil {
			return errorf(KindInvalid, "decode %s: %v", card.GovernanceKey, err)
		}
	}
	var rawTools []json.RawMessage
	if raw, ok := cd.Meta[card.ToolsKey]; ok {
		if err := json.Unmarshal(raw, &rawTools); err != nil {
			return errorf(KindInvalid, "decode %s: %v", card.ToolsKey, err)
		}
	}
	sv := ServerVersion{
		Server:      cd.Name,
		Version:     cd.Version,
		Card:        c.Card,
		CardHash:    cardHash,
		Description: cd.Description,
		Governance:  gov,
		Tools:       make([]ToolRef, 0, len(rawTools)),
		State:       card.StateSubmitted,
		History:     []card.Transition{{To: card.StateSubmitted, By: c.By, At: c.At}},
		SubmittedBy: c.By,
		SubmittedAt: c.At,
		UpdatedAt:   c.At,
		CreateIndex: index,
		ModifyIndex: index,
	}
	for i, raw := range rawTools {
		var head struct {
			Name string `json:"name"`
		}
		if err := json.Unmarshal(raw, &head); err != nil || head.Name == "" {
			return errorf(KindInvalid, "%s[%d]: tool without a name", card.ToolsKey, i)
		}
		h, err := card.CanonicalHash(raw)
		if err != nil {
			return errorf(KindInvalid, "%s[%d]: hash definition: %v", card.ToolsKey, i, err)
		}
		tv := card.ToolVersion{Server: cd.Name, Version: cd.Version, Name: head.Name, Definition: raw, Hash: h}
		mustStage(setJSON(b, toolKey(cd.Name, cd.Version, head.Name), tv))
		sv.Tools = append(sv.Tools, ToolRef{Name: head.Name, Hash: h})
	}
	mustStage(setJSON(b, key, sv))
	return ApplyResult{Index: index}
}

func (f *FSM) applyTransition(b *pebble.Batch, index uint64, c Transition) any {
	sv, found := mustGet[ServerVersion](b, versionKey(c.Server, c.Version))
	if !found {
		return errorf(KindNotFound, "%s@%s is not registered; list versions with `mcpmesh registry show %s`", c.Server, c.Version, c.Server)
	}
	// A forwarded write may be retried after a lost reply: the same command
	// (same author and timestamp) applied twice is a no-op, not a conflict.
	if last := sv.History[len(sv.History)-1]; sv.State == c.To && last.To == c.To && last.By == c.By && last.At.Equal(c.At) {
		return ApplyResult{Index: index, Unchanged: true}
	}
	if err := card.CheckTransition(sv.State, c.To); err != nil {
		return errorf(KindConflict, "%s@%s: %v", c.Server, c.Version, err)
	}
	if (c.To == card.StateRejected || c.To == card.StateQuarantined) && c.Reason == "" {
		return errorf(KindInvalid, "%s@%s: a reason is required to move to %s", c.Server, c.Version, c.To)
	}
	if c.To == card.StateDeprecated {
		if c.Deprecation == nil {
			return errorf(KindInvalid, "%s@%s: deprecation needs a sunset date and a replacement version", c.Server, c.Version)
		}
		d := *c.Deprecation
		if d.DeprecatedAt.IsZero() {
			d.DeprecatedAt = c.At
		}
		if err := d.Validate(c.Version); err != nil {
			return errorf(KindInvalid, "%s@%s: %v", c.Server, c.Version, err)
		}
		repl, ok := mustGet[ServerVersion](b, versionKey(c.Server, d.Replacement))
		if !ok || repl.State != card.StateApproved {
			return errorf(KindConflict, "%s@%s: replacement %s must be an approved version of the same server; approve it first", c.Server, c.Version, d.Replacement)
		}
		sv.Deprecation = &d
	}
	sv.History = append(sv.History, card.Transition{From: sv.State, To: c.To, By: c.By, At: c.At, Reason: c.Reason})
	sv.State = c.To
	sv.UpdatedAt = c.At
	sv.ModifyIndex = index
	mustStage(setJSON(b, versionKey(c.Server, c.Version), sv))
	return ApplyResult{Index: index}
}

func (f *FSM) applyPutTenant(b *pebble.Batch, index uint64, c PutTenant) any {
	if err := ValidateTenantName(c.Tenant.Name); err != nil {
		return err
	}
	if len(c.Tenant.Owners) == 0 {
		return errorf(KindInvalid, "tenant %s: at least one owner is required", c.Tenant.Name)
	}
	t := c.Tenant
	prev, found := mustGet[Tenant](b, tenantKey(t.Name))
	if found {
		if prev.DisplayName == t.DisplayName && slices.Equal(prev.Owners, t.Owners) {
			return ApplyResult{Index: index, Unchanged: true}
		}
		t.CreatedBy, t.CreatedAt, t.CreateIndex = prev.CreatedBy, prev.CreatedAt, prev.CreateIndex
	} else {
		t.CreatedBy, t.CreatedAt, t.CreateIndex = c.By, c.At, index
	}
	t.UpdatedAt, t.ModifyIndex = c.At, index
	mustStage(setJSON(b, tenantKey(t.Name), t))
	return ApplyResult{Index: index}
}

// ValidateTenantName checks a tenant name: lowercase letters, digits and
// dashes, starting with a letter, at most 63 characters.
func ValidateTenantName(name string) error {
	if name == "" || len(name) > 63 || name[0] < 'a' || name[0] > 'z' {
		return errorf(KindInvalid, "tenant name %q: must start with a lowercase letter and have at most 63 characters", name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return errorf(KindInvalid, "tenant name %q: only lowercase letters, digits and dashes are allowed", name)
		}
	}
	return nil
}

// ValidateScopedTenant checks the tenant a limit, quota, kill switch or
// usage report names: a tenant of this BU (ValidateTenantName), or a
// tenant of another BU as calls forwarded from it carry it,
// "<trust domain>/<tenant>" (e.g. hr.example.corp/payroll), so an
// exporting BU can govern and charge the callers of other BUs.
func ValidateScopedTenant(name string) error {
	td, tenant, foreign := strings.Cut(name, "/")
	if !foreign {
		return ValidateTenantName(name)
	}
	if _, err := spiffeid.TrustDomainFromString(td); err != nil || td == "" {
		return errorf(KindInvalid, "tenant %q: a tenant of another BU is <trust domain>/<tenant>, e.g. hr.example.corp/payroll; %q is not a trust domain name", name, td)
	}
	if err := ValidateTenantName(tenant); err != nil {
		return errorf(KindInvalid, "tenant %q: the part after the trust domain: %v", name, err)
	}
	return nil
}

func prefixUpper(prefix []byte) []byte {
	up := bytes.Clone(prefix)
	up[len(up)-1]++
	return up
}

var _ io.Closer = (*FSM)(nil)
