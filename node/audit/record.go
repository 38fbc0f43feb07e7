package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Kind says what a record is about.
type Kind string

// The kinds of record.
const (
	// KindCall is a tools/call, whatever became of it: answered, denied by
	// policy, refused (unknown tool or version), invalid arguments, failed
	// upstream.
	KindCall Kind = "call"
	// KindAuth is a request at the MCP front door whose credential was
	// refused.
	KindAuth Kind = "auth"
	// KindAdmin is a change made through the admin API: a registry write,
	// a membership change, a snapshot restore.
	KindAdmin Kind = "admin"
)

// Outcome is how the recorded event ended.
type Outcome string

// The outcomes.
const (
	// OutcomeOK is a call the upstream answered without error, or an admin
	// change that was applied.
	OutcomeOK Outcome = "ok"
	// OutcomeToolError is a call the upstream answered with isError.
	OutcomeToolError Outcome = "tool_error"
	// OutcomeInputRequired is a call the upstream answered by asking the
	// agent for input (a multi round-trip result).
	OutcomeInputRequired Outcome = "input_required"
	// OutcomeDenied is a request the BU's policy denied.
	OutcomeDenied Outcome = "denied"
	// OutcomeRefused is a request refused before policy: an unknown tool or
	// version, a sunset version, a malformed pin, a refused credential.
	OutcomeRefused Outcome = "refused"
	// OutcomeKilled is a request a kill switch refused.
	OutcomeKilled Outcome = "killed"
	// OutcomeInvalidArguments is a call whose arguments did not match the
	// tool's input schema.
	OutcomeInvalidArguments Outcome = "invalid_arguments"
	// OutcomeUpstreamError is a call whose upstream failed or answered a
	// JSON-RPC error.
	OutcomeUpstreamError Outcome = "upstream_error"
	// OutcomeError is an admin change that was not applied.
	OutcomeError Outcome = "error"
	// OutcomeRequested is an admin change about to be proposed, recorded
	// before it is; the record with the same request id that follows says
	// how it ended (none follows if the node stopped in between).
	OutcomeRequested Outcome = "requested"
	// OutcomeRateLimited is a call a rate limit refused; the record's
	// reason names the limit.
	OutcomeRateLimited Outcome = "rate_limited"
	// OutcomeOverQuota is a call refused because its tenant's monthly call
	// quota or cost budget would be exceeded.
	OutcomeOverQuota Outcome = "over_quota"
	// OutcomeApprovalPending is a call held for approval and answered
	// before anyone decided (the agent retries with the approval id).
	OutcomeApprovalPending Outcome = "approval_pending"
	// OutcomeApprovalDenied is a call whose approval was denied, or that
	// its approval cannot run (used already, or bound to another call).
	OutcomeApprovalDenied Outcome = "approval_denied"
	// OutcomeApprovalExpired is a call whose approval expired.
	OutcomeApprovalExpired Outcome = "approval_expired"
	// OutcomeApprovalDeclined is a call the calling user declined (or
	// cancelled) when asked to confirm it (@approval("confirm")).
	OutcomeApprovalDeclined Outcome = "approval_declined"
)

// Outcomes are the outcomes a record can have, in the order above.
var Outcomes = []Outcome{OutcomeOK, OutcomeToolError, OutcomeInputRequired, OutcomeDenied, OutcomeRefused,
	OutcomeKilled, OutcomeInvalidArguments, OutcomeUpstreamError, OutcomeError,
	OutcomeRateLimited, OutcomeOverQuota, OutcomeApprovalPending, OutcomeApprovalDenied, OutcomeApprovalExpired,
	OutcomeApprovalDeclined, OutcomeRequested}

// OutcomeNames is Outcomes as one comma-separated list, for messages.
func OutcomeNames() string {
	names := make([]string, len(Outcomes))
	for i, o := range Outcomes {
		names[i] = string(o)
	}
	return strings.Join(names, ", ")
}

// Record is one audited event. Its JSON field names are stable: exports
// and SIEM pipelines depend on them. Times are UTC, in RFC 3339 with
// nanoseconds. Fields that do not apply to a kind are left out.
type Record struct {
	// Seq is the record's number in its node's chain, from 1. Set by Append.
	Seq uint64 `json:"seq,omitempty"`
	// Prev is the hex SHA-256 of the record before (64 zeros before the
	// first). Set by Append.
	Prev string `json:"prev,omitempty"`
	// Hash is the record's own hex SHA-256 (see the package doc). Set by
	// Append.
	Hash string `json:"hash,omitempty"`

	// Time is when the event ended (for a call: when its answer was
	// ready). Append sets it to now when zero, and stores it in UTC.
	Time time.Time `json:"time"`
	// Kind says what the record is about.
	Kind Kind `json:"kind"`
	// Node is the id of the node that wrote the record. Append sets it.
	Node string `json:"node"`
	// Namespace is the node's namespace (BU).
	Namespace string `json:"namespace,omitempty"`

	// Principal is who acted: an agent ("apikey:<id>", "oidc:<sub>", a
	// SPIFFE ID, "anonymous") or an administrator ("token:bootstrap", a
	// SPIFFE ID).
	Principal string `json:"principal,omitempty"`
	// Tenant is the principal's tenant, if any.
	Tenant string `json:"tenant,omitempty"`
	// AuthMethod is how the principal authenticated (api-key, x509-svid,
	// oidc, jwt-svid, token, svid), or which method was refused.
	AuthMethod string `json:"authMethod,omitempty"`
	// Actors is the chain of actors, the principal first and this node
	// last: the caller chain of the tokens the node minted for the call.
	Actors []string `json:"actors,omitempty"`
	// Remote is the network address the request came from.
	Remote string `json:"remote,omitempty"`

	// Tool is the called tool as "<server>/<tool>", e.g.
	// "corp.finance/ledger/transfer_funds", or the name the agent called
	// when no tool of that name is served.
	Tool string `json:"tool,omitempty"`
	// CalledAs is the tool's name on the endpoint the agent used, e.g.
	// "finance.transfer_funds".
	CalledAs string `json:"calledAs,omitempty"`
	// Server and Version are the server version that answered (or would
	// have).
	Server  string `json:"server,omitempty"`
	Version string `json:"version,omitempty"`
	// DefinitionHash is the pinned hash of the tool's definition in that
	// version ("sha256:…").
	DefinitionHash string `json:"definitionHash,omitempty"`
	// Action is what an admin change or a refused request did, e.g.
	// "registry.approve" or "POST /mcp".
	Action string `json:"action,omitempty"`
	// Target is the object an admin change changed, e.g.
	// "corp.hr/directory@1.0.0".
	Target string `json:"target,omitempty"`

	// RequestID is the gateway's id of the agent's request (the
	// io.mcpmesh/request_id of the tokens minted for it).
	RequestID string `json:"requestId,omitempty"`
	// WorkflowID is the agent's workflow id, from the call's
	// _meta["io.mcpmesh/workflowId"].
	WorkflowID string `json:"workflowId,omitempty"`
	// TraceID is the W3C trace id of the request's traceparent (header or
	// _meta).
	TraceID string `json:"traceId,omitempty"`
	// Decision is the policy decision: "allow" or "deny"; empty when the
	// request never reached policy.
	Decision string `json:"decision,omitempty"`
	// Policies are the ids of the deciding policies.
	Policies []string `json:"policies,omitempty"`
	// PolicyVersion is the digest of the policy set that decided.
	PolicyVersion string `json:"policyVersion,omitempty"`
	// Reason says why, in words: the denial's reason, the refusal's
	// message, an admin change's stated reason.
	Reason string `json:"reason,omitempty"`

	// Outcome is how the event ended.
	Outcome Outcome `json:"outcome"`
	// ErrorCode is the JSON-RPC error code the agent got, or the HTTP
	// status of a failed admin change; zero on success.
	ErrorCode int `json:"errorCode,omitempty"`
	// DurationMs is how long the request took at this node, in
	// milliseconds (microsecond precision).
	DurationMs float64 `json:"durationMs,omitempty"`

	// ResultBytes is the size of the result's JSON.
	ResultBytes int `json:"resultBytes,omitempty"`
	// Records is how many records the result returned, where the upstream
	// says so (result _meta["io.mcpmesh/records"]).
	Records *int64 `json:"records,omitempty"`
	// Cost is what the call cost, in Currency units: the upstream's own
	// figure (result _meta["io.mcpmesh/cost"]) when it gives one, else the
	// card's costPerCall. CostSource says which ("upstream" or "card").
	Cost       float64 `json:"cost,omitempty"`
	Currency   string  `json:"currency,omitempty"`
	CostSource string  `json:"costSource,omitempty"`

	// ArgumentsHMAC is the hex HMAC-SHA256 of the call's arguments (RFC
	// 8785 canonical JSON) under the BU's audit key: equal arguments give
	// equal values on every replica of the BU, and nobody without the key
	// can test a guess.
	ArgumentsHMAC string `json:"argumentsHmac,omitempty"`
	// Arguments are the call's raw arguments, recorded only for the tools
	// the node's audit.raw_arguments lists.
	Arguments json.RawMessage `json:"arguments,omitempty"`
}

// entryVersion is the first byte of every stored record.
const entryVersion byte = 1

// headerLen is the stored size of a record before its body: version, seq,
// prev and hash.
const headerLen = 1 + 8 + 32 + 32

// maxBody bounds one record's body, so a corrupt store cannot make a
// reader allocate without limit and a caller cannot write a giant record.
const maxBody = 1 << 20

// ErrCorrupt is wrapped by errors about a stored record that cannot be
// decoded.
var ErrCorrupt = errors.New("corrupt audit record")

// entry is one stored record, undecoded.
type entry struct {
	seq  uint64
	prev [32]byte
	hash [32]byte
	body []byte
}

// encodeBody returns the JSON a record is hashed and stored as: the record
// without its seq, prev and hash.
func encodeBody(r Record) ([]byte, error) {
	r.Seq, r.Prev, r.Hash = 0, "", ""
	if math.IsNaN(r.Cost) || math.IsInf(r.Cost, 0) {
		return nil, fmt.Errorf("audit record: cost %v is not a number", r.Cost)
	}
	if math.IsNaN(r.DurationMs) || math.IsInf(r.DurationMs, 0) {
		return nil, fmt.Errorf("audit record: duration %v is not a number", r.DurationMs)
	}
	body, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("audit record: encode: %w", err)
	}
	if len(body) > maxBody {
		return nil, fmt.Errorf("audit record: %d bytes, more than the limit of %d (raw arguments too large?)", len(body), maxBody)
	}
	return body, nil
}

// chainHash is a record's hash: SHA-256 over the previous record's hash,
// the entry version, the record's seq and its body.
func chainHash(prev [32]byte, seq uint64, body []byte) [32]byte {
	h := sha256.New()
	var hdr [1 + 8]byte
	hdr[0] = entryVersion
	binary.BigEndian.PutUint64(hdr[1:], seq)
	h.Write(prev[:])
	h.Write(hdr[:])
	h.Write(body)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// encodeEntry is the stored value of a record.
func encodeEntry(e entry) []byte {
	v := make([]byte, headerLen+len(e.body))
	v[0] = entryVersion
	binary.BigEndian.PutUint64(v[1:9], e.seq)
	copy(v[9:41], e.prev[:])
	copy(v[41:73], e.hash[:])
	copy(v[73:], e.body)
	return v
}

// decodeEntry parses a stored value without checking its hash. The body
// aliases v.
func decodeEntry(v []byte) (entry, error) {
	if len(v) < headerLen {
		return entry{}, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrCorrupt, len(v), headerLen)
	}
	if v[0] != entryVersion {
		return entry{}, fmt.Errorf("%w: version %d, this build reads %d", ErrCorrupt, v[0], entryVersion)
	}
	if len(v)-headerLen > maxBody {
		return entry{}, fmt.Errorf("%w: body of %d bytes exceeds %d", ErrCorrupt, len(v)-headerLen, maxBody)
	}
	e := entry{seq: binary.BigEndian.Uint64(v[1:9]), body: v[headerLen:]}
	copy(e.prev[:], v[9:41])
	copy(e.hash[:], v[41:73])
	return e, nil
}

// record decodes an entry's body and fills in its seq, prev and hash.
func (e entry) record() (Record, error) {
	var r Record
	if err := json.Unmarshal(e.body, &r); err != nil {
		return Record{}, fmt.Errorf("%w: record %d: body: %v", ErrCorrupt, e.seq, err)
	}
	r.Seq, r.Prev, r.Hash = e.seq, hex.EncodeToString(e.prev[:]), hex.EncodeToString(e.hash[:])
	return r, nil
}

// Decode parses a stored record value (as found under [RecordKey]) into
// its Record, without checking the chain. It never panics; a malformed
// value gives an error wrapping [ErrCorrupt].
func Decode(v []byte) (Record, error) {
	e, err := decodeEntry(v)
	if err != nil {
		return Record{}, err
	}
	return e.record()
}

// Key layout of the audit database; see the package doc.
const prefixRecord byte = 'r'

var (
	keyLayout = []byte("m\x00layout")
	keyHead   = []byte("m\x00head")
	keyAnchor = []byte("m\x00anchor")
)

// layoutVersion is stored under keyLayout when a database is created.
const layoutVersion byte = 1

// RecordKey is the database key of record seq, for tools and tests that
// inspect a copy of the store.
func RecordKey(seq uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefixRecord
	binary.BigEndian.PutUint64(k[1:], seq)
	return k
}

// seqOfKey returns the seq of a record key, or false for any other key.
func seqOfKey(k []byte) (uint64, bool) {
	if len(k) != 9 || k[0] != prefixRecord {
		return 0, false
	}
	return binary.BigEndian.Uint64(k[1:]), true
}

// position is a point of the chain: a record's seq and hash (the head, or
// the anchor retention leaves).
type position struct {
	seq  uint64
	hash [32]byte
}

func (p position) encode() []byte {
	v := make([]byte, 8+32)
	binary.BigEndian.PutUint64(v, p.seq)
	copy(v[8:], p.hash[:])
	return v
}

func decodePosition(v []byte) (position, error) {
	if len(v) != 8+32 {
		return position{}, fmt.Errorf("%w: chain position of %d bytes, want 40", ErrCorrupt, len(v))
	}
	var p position
	p.seq = binary.BigEndian.Uint64(v)
	copy(p.hash[:], v[8:])
	return p, nil
}
