package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/mcpmesh/mcpmesh/registry/card"
)

// ServerVersion is one version of one upstream MCP server, as registered.
type ServerVersion struct {
	Server  string `json:"server"`
	Version string `json:"version"`
	// Card is the server card as submitted, with insignificant whitespace
	// removed; it is canonically identical (CardHash) to the submission.
	Card json.RawMessage `json:"card"`
	// CardHash pins the whole card (RFC 8785 canonical JSON, SHA-256).
	CardHash    string            `json:"cardHash"`
	Description string            `json:"description"`
	Governance  card.Governance   `json:"governance"`
	Tools       []ToolRef         `json:"tools"`
	State       card.State        `json:"state"`
	Deprecation *card.Deprecation `json:"deprecation,omitempty"`
	History     []card.Transition `json:"history"`
	SubmittedBy string            `json:"submittedBy"`
	SubmittedAt time.Time         `json:"submittedAt"`
	UpdatedAt   time.Time         `json:"updatedAt"`
	// CreateIndex and ModifyIndex are the Raft indexes that created and
	// last changed this version.
	CreateIndex uint64 `json:"createIndex"`
	ModifyIndex uint64 `json:"modifyIndex"`
}

// ToolRef names one tool of a server version and the hash pinning its definition.
type ToolRef struct {
	Name string `json:"name"`
	Hash string `json:"hash"`
}

// Tenant is a department of the BU that calls tools and is charged for them.
type Tenant struct {
	Name        string    `json:"name"`
	DisplayName string    `json:"displayName,omitempty"`
	Owners      []string  `json:"owners"`
	CreatedBy   string    `json:"createdBy"`
	CreatedAt   time.Time `json:"createdAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
	CreateIndex uint64    `json:"createIndex"`
	ModifyIndex uint64    `json:"modifyIndex"`
}

// ApplyResult is what a successful command returns through raft.ApplyFuture.
type ApplyResult struct {
	// Index is the Raft index of the command.
	Index uint64 `json:"index"`
	// Unchanged is true when the command asked for what was already there
	// (an identical resubmission), so nothing was written.
	Unchanged bool `json:"unchanged,omitempty"`
}

// Kind classifies a refused command or a failed read so that callers can
// map it to an HTTP status without parsing messages.
type Kind string

// The kinds of Error.
const (
	KindNotFound Kind = "not_found"
	KindConflict Kind = "conflict"
	KindInvalid  Kind = "invalid"
)

// Error is a refusal by the state machine. It survives a JSON round trip,
// so a write forwarded to the leader keeps its kind.
type Error struct {
	Kind    Kind   `json:"kind"`
	Message string `json:"message"`
}

// Error returns the message.
func (e *Error) Error() string { return e.Message }

// Is makes errors.Is(err, ErrNotFound) and friends work.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Kind == e.Kind
}

// Sentinels for errors.Is; compare kinds only.
var (
	// ErrNotFound matches any Error of KindNotFound.
	ErrNotFound = &Error{Kind: KindNotFound}
	// ErrConflict matches any Error of KindConflict: the object exists, or
	// its current state does not allow the change.
	ErrConflict = &Error{Kind: KindConflict}
	// ErrInvalid matches any Error of KindInvalid: the command is malformed.
	ErrInvalid = &Error{Kind: KindInvalid}
)

func errorf(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// AsError returns err as an *Error if it is one.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
