package state

import (
	"maps"
	"time"
	"unicode"

	"github.com/cockroachdb/pebble/v2"

	"github.com/mcpmesh/mcpmesh/registry/card"
)

var prefixProfiles = []byte("p\x00")

func profileKey(principal string) []byte { return []byte("p\x00" + principal) }

// maxPrincipalLen bounds a profile's principal id.
const maxPrincipalLen = 512

// Profile is an agent's lock of server versions: calls of that principal
// that pin no version in _meta go to the version named here.
type Profile struct {
	// Principal is the agent's principal id as the front door names it:
	// "apikey:<id>" or a SPIFFE ID.
	Principal string `json:"principal"`
	// Pins maps server names to exact versions.
	Pins        map[string]string `json:"pins"`
	CreatedBy   string            `json:"createdBy"`
	CreatedAt   time.Time         `json:"createdAt"`
	UpdatedBy   string            `json:"updatedBy"`
	UpdatedAt   time.Time         `json:"updatedAt"`
	CreateIndex uint64            `json:"createIndex"`
	ModifyIndex uint64            `json:"modifyIndex"`
}

// PutProfile sets a principal's profile, replacing its pins.
type PutProfile struct {
	Principal string            `json:"principal"`
	Pins      map[string]string `json:"pins"`
	By        string            `json:"by"`
	At        time.Time         `json:"at"`
}

// DeleteProfile removes a principal's profile.
type DeleteProfile struct {
	Principal string    `json:"principal"`
	By        string    `json:"by"`
	At        time.Time `json:"at"`
}

// ValidatePrincipal checks the form of a principal id.
func ValidatePrincipal(p string) error {
	if p == "" || len(p) > maxPrincipalLen {
		return errorf(KindInvalid, "principal: want an agent's principal id (apikey:<id> or a SPIFFE ID) of at most %d characters", maxPrincipalLen)
	}
	for _, r := range p {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return errorf(KindInvalid, "principal %q: must not contain spaces or control characters", p)
		}
	}
	return nil
}

func (f *FSM) applyPutProfile(b *pebble.Batch, index uint64, c PutProfile) any {
	if err := ValidatePrincipal(c.Principal); err != nil {
		return err
	}
	if len(c.Pins) == 0 {
		return errorf(KindInvalid, "profile of %s: pin at least one server version (delete the profile to unpin everything)", c.Principal)
	}
	for server, version := range c.Pins {
		if err := card.ValidateVersion(version); err != nil {
			return errorf(KindInvalid, "profile of %s: %s@%s: %v", c.Principal, server, version, err)
		}
		sv, found := mustGet[ServerVersion](b, versionKey(server, version))
		if !found {
			return errorf(KindNotFound, "profile of %s: %s@%s is not registered", c.Principal, server, version)
		}
		if sv.State != card.StateApproved && sv.State != card.StateDeprecated {
			return errorf(KindConflict, "profile of %s: %s@%s is %s; pin an approved or deprecated version", c.Principal, server, version, sv.State)
		}
	}
	p, found := mustGet[Profile](b, profileKey(c.Principal))
	if found && maps.Equal(p.Pins, c.Pins) {
		return ApplyResult{Index: index, Unchanged: true}
	}
	if !found {
		p = Profile{Principal: c.Principal, CreatedBy: c.By, CreatedAt: c.At, CreateIndex: index}
	}
	p.Pins = c.Pins
	p.UpdatedBy, p.UpdatedAt, p.ModifyIndex = c.By, c.At, index
	mustStage(setJSON(b, profileKey(c.Principal), p))
	return ApplyResult{Index: index}
}

func (f *FSM) applyDeleteProfile(b *pebble.Batch, index uint64, c DeleteProfile) any {
	_, found := mustGet[Profile](b, profileKey(c.Principal))
	if !found {
		return errorf(KindNotFound, "%s has no profile", c.Principal)
	}
	mustStage(b.Delete(profileKey(c.Principal), nil))
	return ApplyResult{Index: index}
}

// Profile returns one principal's profile.
func (f *FSM) Profile(principal string) (Profile, error) {
	return getOne[Profile](f, profileKey(principal), func() error {
		return errorf(KindNotFound, "%s has no profile", principal)
	})
}

// Profiles returns every profile, by principal.
func (f *FSM) Profiles() ([]Profile, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return scan[Profile](f.db, prefixProfiles)
}
