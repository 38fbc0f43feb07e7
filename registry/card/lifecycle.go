package card

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// State is the lifecycle state of one server version.
type State string

// Lifecycle states. A version starts submitted; only approved and deprecated
// versions answer calls.
const (
	// StateSubmitted is a version waiting for review.
	StateSubmitted State = "submitted"
	// StateApproved is a live version.
	StateApproved State = "approved"
	// StateDeprecated still answers, with a warning, until its sunset.
	StateDeprecated State = "deprecated"
	// StateRetired no longer answers. It is final.
	StateRetired State = "retired"
	// StateRejected was refused in review. It is final.
	StateRejected State = "rejected"
	// StateQuarantined is withheld from callers, for instance because the
	// upstream's definition no longer matches the pinned hash, until a
	// reviewer re-approves, retires or rejects it.
	StateQuarantined State = "quarantined"
)

// states lists every State in lifecycle order.
var states = []State{StateSubmitted, StateApproved, StateDeprecated, StateRetired, StateRejected, StateQuarantined}

// transitions maps each state to the states it may move to, in lifecycle
// order.
var transitions = map[State][]State{
	StateSubmitted:   {StateApproved, StateRejected},
	StateApproved:    {StateDeprecated, StateRetired, StateQuarantined},
	StateDeprecated:  {StateRetired, StateQuarantined},
	StateQuarantined: {StateApproved, StateRetired, StateRejected},
	StateRetired:     nil,
	StateRejected:    nil,
}

// Valid reports whether s is one of the lifecycle states.
func (s State) Valid() bool {
	return slices.Contains(states, s)
}

// Transition records one lifecycle change.
type Transition struct {
	// From is the state before the change.
	From State `json:"from"`
	// To is the state after the change.
	To State `json:"to"`
	// By is the principal that made the change.
	By string `json:"by"`
	// At is when the change was made.
	At time.Time `json:"at"`
	// Reason is an optional free-text explanation.
	Reason string `json:"reason,omitempty"`
}

// ErrInvalidTransition is wrapped by the error CheckTransition returns for a
// lifecycle change that is not allowed.
var ErrInvalidTransition = errors.New("invalid lifecycle transition")

// CheckTransition reports whether a version may move from one state to
// another. The allowed transitions are:
//
//	submitted   → approved, rejected
//	approved    → deprecated, retired, quarantined
//	deprecated  → retired, quarantined
//	quarantined → approved, retired, rejected
//
// Retired and rejected are final, and no state moves to itself. The error
// wraps ErrInvalidTransition and says which transitions from are allowed.
func CheckTransition(from, to State) error {
	if !from.Valid() {
		return fmt.Errorf("%w: unknown state %q; states are %s", ErrInvalidTransition, from, joinStates(states))
	}
	if !to.Valid() {
		return fmt.Errorf("%w: unknown state %q; states are %s", ErrInvalidTransition, to, joinStates(states))
	}
	allowed := transitions[from]
	if slices.Contains(allowed, to) {
		return nil
	}
	if len(allowed) == 0 {
		return fmt.Errorf("%w: %s → %s: %s is final, no transition leaves it; submit a new version instead", ErrInvalidTransition, from, to, from)
	}
	return fmt.Errorf("%w: %s → %s: from %s a version may only become %s", ErrInvalidTransition, from, to, from, joinStates(allowed))
}

func joinStates(ss []State) string {
	names := make([]string, len(ss))
	for i, s := range ss {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

// Deprecation holds what a deprecated version tells its callers.
type Deprecation struct {
	// DeprecatedAt is when the version was deprecated.
	DeprecatedAt time.Time `json:"deprecatedAt"`
	// Sunset is when the version stops answering; after it, calls get an
	// error naming Replacement and Note.
	Sunset time.Time `json:"sunset"`
	// Replacement is the exact semantic version of the same server that
	// callers should move to.
	Replacement string `json:"replacement"`
	// Note is an optional migration note.
	Note string `json:"note,omitempty"`
}

// Validate checks a deprecation of version current: both times set, Sunset
// after DeprecatedAt, and Replacement an exact semantic version other than
// current. The error lists every problem.
func (d Deprecation) Validate(current string) error {
	var ps []string
	if d.DeprecatedAt.IsZero() {
		ps = append(ps, "deprecatedAt: is required: give the time of deprecation")
	}
	switch {
	case d.Sunset.IsZero():
		ps = append(ps, "sunset: is required: give the time after which the version stops answering")
	case !d.DeprecatedAt.IsZero() && !d.Sunset.After(d.DeprecatedAt):
		ps = append(ps, fmt.Sprintf("sunset: %s is not after deprecatedAt %s: give callers time to migrate",
			d.Sunset.Format(time.RFC3339), d.DeprecatedAt.Format(time.RFC3339)))
	}
	switch err := ValidateVersion(d.Replacement); {
	case err != nil:
		ps = append(ps, "replacement: "+versionMessage(err))
	case d.Replacement == current:
		ps = append(ps, fmt.Sprintf("replacement: %q is the version being deprecated: name the version callers should move to", current))
	}
	if len(ps) == 0 {
		return nil
	}
	return fmt.Errorf("deprecation of version %s invalid: %s", current, strings.Join(ps, "; "))
}
