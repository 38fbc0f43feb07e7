package state

import (
	"cmp"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

var keyPolicies = []byte("c\x00policies")

// PolicyFile is one Cedar policy file of a BU's policy set.
type PolicyFile struct {
	Name string `json:"name"`
	Text string `json:"text"`
}

// Policies is a BU's Cedar policy set: every file, replaced as a whole so
// that every replica swaps from one complete set to the next. The admin
// API validates the files against the schema (package node/policy) before
// it commits them; the state machine stores them as given.
type Policies struct {
	// Files are sorted by name.
	Files     []PolicyFile `json:"files"`
	UpdatedBy string       `json:"updatedBy"`
	UpdatedAt time.Time    `json:"updatedAt"`
	// ModifyIndex is the Raft index of the change: the set's version.
	ModifyIndex uint64 `json:"modifyIndex"`
}

// PutPolicies replaces the policy set. An empty Files removes every
// policy, which denies every request.
type PutPolicies struct {
	Files []PolicyFile `json:"files"`
	By    string       `json:"by"`
	At    time.Time    `json:"at"`
}

func (f *FSM) applyPutPolicies(b *pebble.Batch, index uint64, c PutPolicies) any {
	files := slices.Clone(c.Files)
	slices.SortFunc(files, func(a, b PolicyFile) int { return cmp.Compare(a.Name, b.Name) })
	for i, file := range files {
		if file.Name == "" {
			return errorf(KindInvalid, "policy file %d has no name", i)
		}
		if i > 0 && files[i-1].Name == file.Name {
			return errorf(KindInvalid, "policy file %s is given twice", file.Name)
		}
	}
	p, found := mustGet[Policies](b, keyPolicies)
	if found && slices.Equal(p.Files, files) {
		return ApplyResult{Index: index, Unchanged: true}
	}
	p = Policies{Files: files, UpdatedBy: c.By, UpdatedAt: c.At, ModifyIndex: index}
	mustStage(setJSON(b, keyPolicies, p))
	return ApplyResult{Index: index}
}

// Policies returns the policy set; a registry that never had one returns
// the zero Policies (no files: deny everything).
func (f *FSM) Policies() (Policies, error) {
	p, err := getOne[Policies](f, keyPolicies, func() error { return nil })
	return p, err
}
