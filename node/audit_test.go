package node

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/mcpmesh/mcpmesh/node/audit"
	"github.com/mcpmesh/mcpmesh/registry/state"
)

// TestCheckpointer: the node commits its chain head when it moved, and
// only then.
func TestCheckpointer(t *testing.T) {
	l, err := audit.Open(audit.Config{Dir: filepath.Join(t.TempDir(), "audit"), Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var proposed []state.CheckpointAudit
	var fail error
	at := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	c := &checkpointer{log: l, node: "n1", now: func() time.Time { return at }, logger: slog.New(slog.DiscardHandler),
		propose: func(_ context.Context, cmd []byte) error {
			if fail != nil {
				return fail
			}
			if state.CommandType(cmd[0]) != state.CmdCheckpointAudit {
				t.Fatalf("proposed command type %d", cmd[0])
			}
			var cp state.CheckpointAudit
			if err := json.Unmarshal(cmd[1:], &cp); err != nil {
				t.Fatal(err)
			}
			proposed = append(proposed, cp)
			return nil
		}}
	ctx := t.Context()
	if err := c.once(ctx); err != nil || len(proposed) != 0 {
		t.Fatalf("an empty log was checkpointed: %v %+v", err, proposed)
	}
	for range 3 {
		if _, err := l.Append(ctx, audit.Record{Kind: audit.KindCall, Outcome: audit.OutcomeOK}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.once(ctx); err != nil {
		t.Fatal(err)
	}
	seq, head := l.Head()
	if len(proposed) != 1 || proposed[0] != (state.CheckpointAudit{Node: "n1", Seq: seq, Head: head, At: at}) {
		t.Fatalf("proposed %+v, want the head %d %s", proposed, seq, head)
	}
	if err := c.once(ctx); err != nil || len(proposed) != 1 {
		t.Errorf("an unchanged head was checkpointed again: %v, %d proposals", err, len(proposed))
	}
	if _, err := l.Append(ctx, audit.Record{Kind: audit.KindCall, Outcome: audit.OutcomeOK}); err != nil {
		t.Fatal(err)
	}
	fail = errors.New("no leader")
	if err := c.once(ctx); err == nil {
		t.Error("a failed proposal was not reported")
	}
	fail = nil
	if err := c.once(ctx); err != nil || len(proposed) != 2 || proposed[1].Seq != seq+1 {
		t.Errorf("after a failed proposal the next one did not carry the new head: %v %+v", err, proposed)
	}
}
