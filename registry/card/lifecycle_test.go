package card

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCheckTransitionExhaustive(t *testing.T) {
	allowed := map[[2]State]bool{
		{StateSubmitted, StateApproved}:     true,
		{StateSubmitted, StateRejected}:     true,
		{StateApproved, StateDeprecated}:    true,
		{StateApproved, StateRetired}:       true,
		{StateDeprecated, StateRetired}:     true,
		{StateApproved, StateQuarantined}:   true,
		{StateDeprecated, StateQuarantined}: true,
		{StateQuarantined, StateApproved}:   true,
		{StateQuarantined, StateRetired}:    true,
		{StateQuarantined, StateRejected}:   true,
	}
	all := []State{StateSubmitted, StateApproved, StateDeprecated, StateRetired, StateRejected, StateQuarantined, "", "live", "Approved"}
	for _, from := range all {
		for _, to := range all {
			t.Run(string(from)+"→"+string(to), func(t *testing.T) {
				err := CheckTransition(from, to)
				if allowed[[2]State{from, to}] {
					if err != nil {
						t.Errorf("CheckTransition(%q, %q) = %v; want allowed", from, to, err)
					}
					return
				}
				if err == nil {
					t.Fatalf("CheckTransition(%q, %q) = nil; want refused", from, to)
				}
				if !errors.Is(err, ErrInvalidTransition) {
					t.Errorf("error %v does not wrap ErrInvalidTransition", err)
				}
				if !from.Valid() || !to.Valid() {
					if !strings.Contains(err.Error(), "unknown state") {
						t.Errorf("error %q does not name the unknown state", err)
					}
					return
				}
				// The error names every state that from may move to.
				for pair := range allowed {
					if pair[0] == from && !strings.Contains(err.Error(), string(pair[1])) {
						t.Errorf("error %q does not list allowed target %s", err, pair[1])
					}
				}
				if (from == StateRetired || from == StateRejected) && !strings.Contains(err.Error(), "final") {
					t.Errorf("error %q does not say %s is final", err, from)
				}
			})
		}
	}
}

func TestCheckTransitionMessage(t *testing.T) {
	err := CheckTransition(StateApproved, StateSubmitted)
	want := "invalid lifecycle transition: approved → submitted: from approved a version may only become deprecated, retired, quarantined"
	if err == nil || err.Error() != want {
		t.Errorf("CheckTransition(approved, submitted) = %v; want %q", err, want)
	}
}

func TestDeprecationValidate(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	good := Deprecation{DeprecatedAt: at, Sunset: at.Add(90 * 24 * time.Hour), Replacement: "2.0.0", Note: "use transfer_funds v2: amounts are in cents"}
	tests := []struct {
		name    string
		mutate  func(d *Deprecation)
		wantErr []string // substrings of the error; none means valid
	}{
		{"valid", func(d *Deprecation) {}, nil},
		{"valid without note", func(d *Deprecation) { d.Note = "" }, nil},
		{"replacement is an older version", func(d *Deprecation) { d.Replacement = "0.9.0" }, nil},
		{"replacement is a prerelease", func(d *Deprecation) { d.Replacement = "2.0.0-rc.1" }, nil},
		{"sunset equals deprecatedAt", func(d *Deprecation) { d.Sunset = at }, []string{"sunset:", "not after deprecatedAt"}},
		{"sunset before deprecatedAt", func(d *Deprecation) { d.Sunset = at.Add(-time.Hour) }, []string{"sunset:"}},
		{"sunset missing", func(d *Deprecation) { d.Sunset = time.Time{} }, []string{"sunset: is required"}},
		{"deprecatedAt missing", func(d *Deprecation) { d.DeprecatedAt = time.Time{} }, []string{"deprecatedAt: is required"}},
		{"replacement missing", func(d *Deprecation) { d.Replacement = "" }, []string{"replacement: is required"}},
		{"replacement is a range", func(d *Deprecation) { d.Replacement = "^2" }, []string{"replacement:", "range"}},
		{"replacement with v", func(d *Deprecation) { d.Replacement = "v2.0.0" }, []string{"replacement:", "drop it"}},
		{"replacement is current", func(d *Deprecation) { d.Replacement = "1.0.0" }, []string{"replacement:", "version being deprecated"}},
		{"several problems", func(d *Deprecation) { d.Sunset = at; d.Replacement = "1.0.0" }, []string{"sunset:", "; replacement:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := good
			tt.mutate(&d)
			err := d.Validate("1.0.0")
			if tt.wantErr == nil {
				if err != nil {
					t.Errorf("Validate = %v; want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil; want an error containing %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %q; want it to contain %q", err, w)
				}
			}
		})
	}
}
