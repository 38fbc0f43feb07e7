package state

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/mcpmesh/mcpmesh/registry/card"
)

// CommandType is the first byte of every Raft log entry the FSM applies.
type CommandType uint8

// IgnorableFlag marks a command type that nodes which do not know it may
// skip. Use it only for commands whose absence cannot change any other
// object's state (hints, caches).
const IgnorableFlag CommandType = 0x80

// The command types. Values are persisted in Raft logs and snapshots: never
// renumber or reuse one.
const (
	CmdSubmitVersion CommandType = 1
	CmdTransition    CommandType = 2
	CmdPutTenant     CommandType = 3
	CmdNoop          CommandType = 4
	CmdCreateAPIKey  CommandType = 5
	CmdRevokeAPIKey  CommandType = 6
	CmdPutProfile    CommandType = 7
	CmdDeleteProfile CommandType = 8
	CmdPutPolicies   CommandType = 9
	// 10 is reserved.
	CmdRotateSigningKey CommandType = 11
	CmdDeleteSigningKey CommandType = 12
	CmdPutKill          CommandType = 13
	CmdRevive           CommandType = 14
	CmdCheckpointAudit  CommandType = 15
	CmdPutLimits        CommandType = 16
	CmdSetLiveReplicas  CommandType = 17
	CmdPutQuotas        CommandType = 18
	CmdFlushUsage       CommandType = 19
	CmdRequestApproval  CommandType = 20
	CmdDecideApproval   CommandType = 21
	CmdConsumeApproval  CommandType = 22
	CmdPruneApprovals   CommandType = 23
	CmdPutManifest      CommandType = 24
	CmdPutBundle        CommandType = 25
	CmdDeleteBundle     CommandType = 26
	CmdPutExports       CommandType = 27
	CmdPutImports       CommandType = 28
	CmdPutPeerStatus    CommandType = 29
)

// String names the command type for logs and errors.
func (t CommandType) String() string {
	switch t {
	case CmdSubmitVersion:
		return "submit-version"
	case CmdTransition:
		return "transition"
	case CmdPutTenant:
		return "put-tenant"
	case CmdNoop:
		return "noop"
	case CmdCreateAPIKey:
		return "create-api-key"
	case CmdRevokeAPIKey:
		return "revoke-api-key"
	case CmdPutProfile:
		return "put-profile"
	case CmdDeleteProfile:
		return "delete-profile"
	case CmdPutPolicies:
		return "put-policies"
	case CmdRotateSigningKey:
		return "rotate-signing-key"
	case CmdDeleteSigningKey:
		return "delete-signing-key"
	case CmdPutKill:
		return "put-kill"
	case CmdRevive:
		return "revive"
	case CmdCheckpointAudit:
		return "checkpoint-audit"
	case CmdPutLimits:
		return "put-limits"
	case CmdSetLiveReplicas:
		return "set-live-replicas"
	case CmdPutQuotas:
		return "put-quotas"
	case CmdFlushUsage:
		return "flush-usage"
	case CmdRequestApproval:
		return "request-approval"
	case CmdDecideApproval:
		return "decide-approval"
	case CmdConsumeApproval:
		return "consume-approval"
	case CmdPruneApprovals:
		return "prune-approvals"
	case CmdPutManifest:
		return "put-manifest"
	case CmdPutExports:
		return "put-exports"
	case CmdPutImports:
		return "put-imports"
	case CmdPutPeerStatus:
		return "put-peer-status"
	case CmdPutBundle:
		return "put-bundle"
	case CmdDeleteBundle:
		return "delete-bundle"
	}
	return fmt.Sprintf("unknown(%d)", uint8(t))
}

// SubmitVersion adds a new server version in state submitted. The card is
// stored exactly as submitted; it must pass card.Parse.
type SubmitVersion struct {
	Card json.RawMessage `json:"card"`
	By   string          `json:"by"`
	At   time.Time       `json:"at"`
}

// Transition moves a server version through its lifecycle.
type Transition struct {
	Server  string     `json:"server"`
	Version string     `json:"version"`
	To      card.State `json:"to"`
	By      string     `json:"by"`
	At      time.Time  `json:"at"`
	Reason  string     `json:"reason,omitempty"`
	// Deprecation is required when To is deprecated and ignored otherwise.
	Deprecation *card.Deprecation `json:"deprecation,omitempty"`
}

// PutTenant creates or updates a tenant.
type PutTenant struct {
	Tenant Tenant    `json:"tenant"`
	By     string    `json:"by"`
	At     time.Time `json:"at"`
}

// Noop changes nothing; a leader commits one to learn its commit index.
type Noop struct{}

// Encode returns the log entry for a command value: its type byte then JSON.
func Encode(cmd any) ([]byte, error) {
	var t CommandType
	switch cmd.(type) {
	case SubmitVersion, *SubmitVersion:
		t = CmdSubmitVersion
	case Transition, *Transition:
		t = CmdTransition
	case PutTenant, *PutTenant:
		t = CmdPutTenant
	case Noop, *Noop:
		t = CmdNoop
	case CreateAPIKey, *CreateAPIKey:
		t = CmdCreateAPIKey
	case RevokeAPIKey, *RevokeAPIKey:
		t = CmdRevokeAPIKey
	case PutProfile, *PutProfile:
		t = CmdPutProfile
	case DeleteProfile, *DeleteProfile:
		t = CmdDeleteProfile
	case PutPolicies, *PutPolicies:
		t = CmdPutPolicies
	case RotateSigningKey, *RotateSigningKey:
		t = CmdRotateSigningKey
	case DeleteSigningKey, *DeleteSigningKey:
		t = CmdDeleteSigningKey
	case PutKill, *PutKill:
		t = CmdPutKill
	case Revive, *Revive:
		t = CmdRevive
	case CheckpointAudit, *CheckpointAudit:
		t = CmdCheckpointAudit
	case PutLimits, *PutLimits:
		t = CmdPutLimits
	case SetLiveReplicas, *SetLiveReplicas:
		t = CmdSetLiveReplicas
	case PutQuotas, *PutQuotas:
		t = CmdPutQuotas
	case FlushUsage, *FlushUsage:
		t = CmdFlushUsage
	case RequestApproval, *RequestApproval:
		t = CmdRequestApproval
	case DecideApproval, *DecideApproval:
		t = CmdDecideApproval
	case ConsumeApproval, *ConsumeApproval:
		t = CmdConsumeApproval
	case PruneApprovals, *PruneApprovals:
		t = CmdPruneApprovals
	case PutManifest, *PutManifest:
		t = CmdPutManifest
	case PutExports, *PutExports:
		t = CmdPutExports
	case PutImports, *PutImports:
		t = CmdPutImports
	case PutPeerStatus, *PutPeerStatus:
		t = CmdPutPeerStatus
	case PutBundle, *PutBundle:
		t = CmdPutBundle
	case DeleteBundle, *DeleteBundle:
		t = CmdDeleteBundle
	default:
		return nil, fmt.Errorf("encode command: unsupported type %T", cmd)
	}
	body, err := json.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("encode %s command: %w", t, err)
	}
	return append([]byte{byte(t)}, body...), nil
}
