package state

import (
	"errors"
	"testing"
	"time"

	"github.com/mcpmesh/mcpmesh/registry/card"
)

func TestProfiles(t *testing.T) {
	a := &applier{t: t, f: newTestFSM(t)}
	const ledger = "corp.finance/ledger"
	a.mustOK(SubmitVersion{Card: testCard(ledger, "1.0.0"), By: "ci", At: t0})
	a.mustOK(SubmitVersion{Card: testCard(ledger, "2.0.0"), By: "ci", At: t0})
	a.mustOK(Transition{Server: ledger, Version: "1.0.0", To: card.StateApproved, By: "rev", At: t0})
	const agent = "spiffe://finance.example.corp/agent/reports"

	a.mustFail(PutProfile{Principal: agent, Pins: map[string]string{ledger: "2.0.0"}, By: "admin", At: t0}, KindConflict, "is submitted")
	a.mustFail(PutProfile{Principal: agent, Pins: map[string]string{ledger: "3.0.0"}, By: "admin", At: t0}, KindNotFound, "not registered")
	a.mustFail(PutProfile{Principal: agent, Pins: map[string]string{ledger: "v1"}, By: "admin", At: t0}, KindInvalid, "v1")
	a.mustFail(PutProfile{Principal: agent, By: "admin", At: t0}, KindInvalid, "at least one")
	a.mustFail(PutProfile{Principal: "has space", Pins: map[string]string{ledger: "1.0.0"}, By: "admin", At: t0}, KindInvalid, "spaces")
	a.mustFail(PutProfile{Principal: "", Pins: map[string]string{ledger: "1.0.0"}, By: "admin", At: t0}, KindInvalid, "principal")

	created := a.mustOK(PutProfile{Principal: agent, Pins: map[string]string{ledger: "1.0.0"}, By: "admin", At: t0})
	if r := a.mustOK(PutProfile{Principal: agent, Pins: map[string]string{ledger: "1.0.0"}, By: "other", At: t0.Add(time.Hour)}); !r.Unchanged {
		t.Error("identical put changed the profile")
	}
	a.mustOK(Transition{Server: ledger, Version: "2.0.0", To: card.StateApproved, By: "rev", At: t0})
	a.mustOK(PutProfile{Principal: agent, Pins: map[string]string{ledger: "2.0.0"}, By: "bob", At: t0.Add(time.Hour)})
	p, err := a.f.Profile(agent)
	if err != nil {
		t.Fatal(err)
	}
	if p.Pins[ledger] != "2.0.0" || p.CreatedBy != "admin" || p.CreateIndex != created.Index || p.UpdatedBy != "bob" || !p.UpdatedAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("profile = %+v", p)
	}
	a.mustOK(PutProfile{Principal: "apikey:aaaaaaaaaaaa", Pins: map[string]string{ledger: "1.0.0"}, By: "admin", At: t0})
	ps, err := a.f.Profiles()
	if err != nil || len(ps) != 2 || ps[0].Principal != "apikey:aaaaaaaaaaaa" {
		t.Fatalf("Profiles = %+v, %v", ps, err)
	}

	a.mustOK(DeleteProfile{Principal: agent, By: "admin", At: t0})
	a.mustFail(DeleteProfile{Principal: agent, By: "admin", At: t0}, KindNotFound, "has no profile")
	if _, err := a.f.Profile(agent); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted profile: err = %v", err)
	}
}
