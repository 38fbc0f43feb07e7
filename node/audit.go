package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpmesh/mcpmesh/node/audit"
	"github.com/mcpmesh/mcpmesh/node/config"
	"github.com/mcpmesh/mcpmesh/registry/state"
	"github.com/mcpmesh/mcpmesh/trust/agentauth"
)

// The node's audit log (package node/audit) lives in <data dir>/audit.
// The gateway records every tools/call in it, the agent authenticator
// every refused credential, the admin API every change, and the
// definition check every quarantine it proposes.

// auditDir is the audit log's directory under the data dir.
const auditDir = "audit"

// openAudit opens the node's audit log and builds its argument hasher,
// with the key from audit.arguments_key_file or else derived from the
// embedded CA.
func openAudit(cfg config.Config, id *identity, logger *slog.Logger, reg prometheus.Registerer) (*audit.Log, *audit.Arguments, error) {
	var key []byte
	switch {
	case cfg.Audit.ArgumentsKeyFile != "":
		raw, err := os.ReadFile(cfg.Audit.ArgumentsKeyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("audit.arguments_key_file: %w", err)
		}
		if key = bytes.TrimSpace(raw); len(key) < 32 {
			return nil, nil, fmt.Errorf("audit.arguments_key_file: %s holds %d bytes; the key needs at least 32 (e.g. `openssl rand -hex 32`)", cfg.Audit.ArgumentsKeyFile, len(key))
		}
	case id.ca != nil:
		var err error
		if key, err = id.ca.AuditKey(); err != nil {
			return nil, nil, err
		}
	default:
		return nil, nil, errors.New("audit.arguments_key_file: missing; this node holds no CA to derive the audit key from")
	}
	args, err := audit.NewArguments(key, cfg.Audit.RawArguments)
	if err != nil {
		return nil, nil, fmt.Errorf("audit: %w", err)
	}
	l, err := audit.Open(audit.Config{Dir: filepath.Join(cfg.DataDir, auditDir), Node: cfg.NodeID, NoSync: cfg.Audit.NoSync},
		audit.WithLogger(logger), audit.WithMetrics(reg))
	if err != nil {
		return nil, nil, err
	}
	return l, args, nil
}

// auditRefusal records a refused agent credential before the refusal is
// answered. The request is refused whether or not its record is written;
// a failure is logged (and counted by the log).
func auditRefusal(l *audit.Log, ns string, logger *slog.Logger) func(*http.Request, *agentauth.Error) {
	return func(r *http.Request, e *agentauth.Error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
		defer cancel()
		rec := audit.Record{Kind: audit.KindAuth, Namespace: ns, AuthMethod: string(e.Method), Remote: r.RemoteAddr,
			Action: r.Method + " " + r.URL.Path, Outcome: audit.OutcomeRefused, Reason: e.Reason + ": " + e.Message}
		if _, err := l.Append(ctx, rec); err != nil {
			logger.Error("audit: the record of a refused credential could not be written", "path", r.URL.Path, "remote", r.RemoteAddr, "error", err)
		}
	}
}

// auditedQuarantine wraps the gateway's quarantine proposals: each is an
// admin change made by the node itself, and is recorded so.
func auditedQuarantine(l *audit.Log, ns, nodeID string, propose func(context.Context, []byte) error, logger *slog.Logger) func(context.Context, []byte) error {
	return func(ctx context.Context, cmd []byte) error {
		start := time.Now()
		err := propose(ctx, cmd)
		var tr state.Transition
		if len(cmd) > 0 {
			json.Unmarshal(cmd[1:], &tr)
		}
		rec := audit.Record{Kind: audit.KindAdmin, Namespace: ns, Principal: tr.By, Actors: []string{tr.By, nodeID},
			Action: "registry.quarantine", Target: tr.Server + "@" + tr.Version, Reason: tr.Reason, Outcome: audit.OutcomeOK,
			DurationMs: float64(time.Since(start).Microseconds()) / 1000}
		if err != nil {
			rec.Outcome, rec.Reason = audit.OutcomeError, tr.Reason+"; refused: "+err.Error()
		}
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if _, aerr := l.Append(actx, rec); aerr != nil {
			logger.Error("audit: the record of a quarantine could not be written", "target", rec.Target, "error", aerr)
		}
		return err
	}
}

// runRetention removes records older than retention now and every hour,
// until ctx ends. Zero retention keeps everything.
func runRetention(ctx context.Context, l *audit.Log, retention time.Duration, now func() time.Time, logger *slog.Logger) {
	if retention <= 0 {
		return
	}
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if _, err := l.Prune(ctx, now().Add(-retention)); err != nil && ctx.Err() == nil {
			logger.Error("audit retention failed; will retry in an hour", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// checkpointer commits the audit chain's head through Raft (command
// CheckpointAudit), so that a rewritten history of this node's log no
// longer matches the BU's replicated state.
type checkpointer struct {
	log     *audit.Log
	node    string
	propose func(context.Context, []byte) error
	now     func() time.Time
	logger  *slog.Logger
	// last is the record last checkpointed; only the loop and the final
	// checkpoint after it use it.
	last uint64
}

// run checkpoints every interval while the head moves, until ctx ends.
func (c *checkpointer) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := c.once(ctx); err != nil && ctx.Err() == nil {
			c.logger.Warn("audit: could not checkpoint the chain head through Raft; will retry", "error", err)
		}
	}
}

// once proposes the current head if it moved since the last checkpoint.
func (c *checkpointer) once(ctx context.Context) error {
	seq, head := c.log.Head()
	if seq == 0 || seq == c.last {
		return nil
	}
	cmd, err := state.Encode(state.CheckpointAudit{Node: c.node, Seq: seq, Head: head, At: c.now().UTC()})
	if err != nil {
		return err
	}
	if err := c.propose(ctx, cmd); err != nil {
		if errors.Is(err, state.ErrConflict) {
			// Raft holds another hash for this record: this log was
			// rewritten, or lost records it had checkpointed.
			c.logger.Error("audit: the chain head conflicts with a checkpoint of this node in Raft; its audit log was rewritten or lost records; run `mcpmesh audit verify`", "seq", seq, "error", err)
		}
		return fmt.Errorf("checkpoint record %d: %w", seq, err)
	}
	c.last = seq
	return nil
}
