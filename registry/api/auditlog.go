package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mcpmesh/mcpmesh/node/audit"
	"github.com/mcpmesh/mcpmesh/registry/state"
)

// The audit log of the node that answers (each node keeps its own: the
// records of the requests it served):
//
//	GET /v1/audit?principal=&tenant=&tool=&outcome=&kind=&request_id=&since=&until=&limit=
//	GET /v1/audit/export?…the same filters…   (JSON lines, every match)
//	GET /v1/audit/verify                        (the chain, against its checkpoints)
//	GET /v1/audit/checkpoints[?node=ID]         (checkpointed heads in Raft)

// AuditLog is the node's audit log as the admin API writes and serves it;
// node/audit's Log is one.
type AuditLog interface {
	Auditor
	// Query returns the newest matching records, oldest first.
	Query(ctx context.Context, f audit.Filter) ([]audit.Record, error)
	// Export calls fn with every matching record, oldest first.
	Export(ctx context.Context, f audit.Filter, fn func(audit.Record) error) error
	// Verify checks the chain, and it against the checkpoints.
	Verify(ctx context.Context, checkpoints []audit.Checkpoint) (audit.Report, error)
}

// AuditRecords answers GET /v1/audit.
type AuditRecords struct {
	// Node is the node whose log this is.
	Node    string         `json:"node"`
	Records []audit.Record `json:"records"`
}

// AuditVerifyResponse answers GET /v1/audit/verify.
type AuditVerifyResponse struct {
	Node string `json:"node"`
	audit.Report
}

// AuditQuery is the filter of an audit query or export; empty fields
// match everything. Since and Until bound the record's time (Since <= t <
// Until).
type AuditQuery struct {
	Principal, Tenant, Tool, Outcome, Kind string
	// RequestID selects the records of one request: the id the gateway
	// gave it (a tools/call result's _meta "io.mcpmesh/requestId", and
	// the id an error about a call that may have run names). A call
	// forwarded to another BU is recorded there under the same id.
	RequestID    string
	Since, Until time.Time
	// Limit bounds a query (the newest matches); zero means the server's
	// default (100). Export ignores it.
	Limit int
}

func (q AuditQuery) values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"principal": q.Principal, "tenant": q.Tenant, "tool": q.Tool, "outcome": q.Outcome, "kind": q.Kind, "request_id": q.RequestID} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339Nano))
	}
	if !q.Until.IsZero() {
		v.Set("until", q.Until.UTC().Format(time.RFC3339Nano))
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

var (
	outcomes = map[string]bool{}
	kinds    = map[string]bool{string(audit.KindCall): true, string(audit.KindAuth): true, string(audit.KindAdmin): true}
)

func init() {
	for _, o := range audit.Outcomes {
		outcomes[string(o)] = true
	}
}

// auditFilter reads a filter from a request's query.
func auditFilter(r *http.Request) (audit.Filter, error) {
	q := r.URL.Query()
	f := audit.Filter{Principal: q.Get("principal"), Tenant: q.Get("tenant"), Tool: q.Get("tool"),
		Outcome: audit.Outcome(q.Get("outcome")), Kind: audit.Kind(q.Get("kind"))}
	if f.Outcome != "" && !outcomes[string(f.Outcome)] {
		return f, badRequest("outcome %q: want one of %s", f.Outcome, audit.OutcomeNames())
	}
	if f.Kind != "" && !kinds[string(f.Kind)] {
		return f, badRequest("kind %q: want call, auth or admin", f.Kind)
	}
	if q.Has("request_id") {
		f.RequestID = q.Get("request_id")
		if err := CheckRequestID(f.RequestID); err != nil {
			return f, badRequest("request_id: %v", err)
		}
	}
	for _, p := range []struct {
		name string
		to   *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if s := q.Get(p.name); s != "" {
			t, err := ParseDate(s)
			if err != nil {
				return f, badRequest("%s: %v", p.name, err)
			}
			*p.to = t
		}
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > audit.MaxLimit {
			return f, badRequest("limit %q: want a number from 1 to %d", s, audit.MaxLimit)
		}
		f.Limit = n
	}
	return f, nil
}

// MaxRequestIDBytes bounds the request_id of an audit query: the longest
// request id a record can hold is a forwarded call's, which the calling
// BU's assertion bounds to 128 bytes (assertion.MaxValueBytes); the
// gateway's own are 22 characters.
const MaxRequestIDBytes = 128

// CheckRequestID checks the request id an audit query asks for: present,
// bounded (MaxRequestIDBytes), and UTF-8 without control characters, as
// every recorded one is (the rule federation assertions apply to the ids
// they carry). The admin API answers 400 with its error; clients check
// first, so that a BU-wide query fails once rather than at each replica.
func CheckRequestID(id string) error {
	switch {
	case id == "":
		return errors.New("empty; give the id of the request to look for (a tools/call result's _meta \"io.mcpmesh/requestId\", or the one an error names)")
	case len(id) > MaxRequestIDBytes:
		return fmt.Errorf("%d bytes, longer than any request id (at most %d)", len(id), MaxRequestIDBytes)
	case !utf8.ValidString(id):
		return errors.New("not valid UTF-8")
	}
	for _, r := range id {
		if unicode.IsControl(r) {
			return fmt.Errorf("%q holds a control character; no request id does", id)
		}
	}
	return nil
}

// auditRoutes adds the audit log's routes.
func (h *Handler) auditRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /v1/audit", h.auditQuery)
	m.HandleFunc("GET /v1/audit/export", h.auditExport)
	m.HandleFunc("GET /v1/audit/verify", h.auditVerify)
	m.HandleFunc("GET /v1/audit/checkpoints", h.auditCheckpoints)
}

// auditLog returns the node's audit log, or answers that there is none.
func (h *Handler) auditLog(w http.ResponseWriter, r *http.Request) AuditLog {
	if h.auditor == nil {
		writeError(w, http.StatusNotFound, "not_found", "this node serves no audit log", nil)
	}
	return h.auditor
}

func (h *Handler) auditQuery(w http.ResponseWriter, r *http.Request) {
	l := h.auditLog(w, r)
	if l == nil {
		return
	}
	f, err := auditFilter(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	recs, err := l.Query(r.Context(), f)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if recs == nil {
		recs = []audit.Record{}
	}
	writeJSON(w, http.StatusOK, AuditRecords{Node: h.node, Records: recs})
}

func (h *Handler) auditExport(w http.ResponseWriter, r *http.Request) {
	l := h.auditLog(w, r)
	if l == nil {
		return
	}
	f, err := auditFilter(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	err = l.Export(r.Context(), f, func(rec audit.Record) error { return enc.Encode(rec) })
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		// The status is gone; the client sees a truncated stream without
		// its last newline.
		h.logger.Error("audit export failed mid-stream", "error", err)
	}
}

// checkpoints returns node's checkpointed heads as the audit package
// takes them.
func (h *Handler) checkpoints(node string) ([]audit.Checkpoint, error) {
	cps, err := h.cl.FSM.AuditCheckpoints(node)
	if err != nil {
		return nil, err
	}
	out := make([]audit.Checkpoint, 0, len(cps))
	for _, c := range cps {
		out = append(out, audit.Checkpoint{Seq: c.Seq, Head: c.Head, At: c.At})
	}
	return out, nil
}

func (h *Handler) auditVerify(w http.ResponseWriter, r *http.Request) {
	l := h.auditLog(w, r)
	if l == nil {
		return
	}
	cps, err := h.checkpoints(h.node)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	rep, err := l.Verify(r.Context(), cps)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if !rep.OK {
		h.logger.Error("audit verify found problems in this node's audit log", "problems", len(rep.Problems)+rep.Omitted, "by", by(r))
	}
	writeJSON(w, http.StatusOK, AuditVerifyResponse{Node: h.node, Report: rep})
}

func (h *Handler) auditCheckpoints(w http.ResponseWriter, r *http.Request) {
	node := r.URL.Query().Get("node")
	if node == "" {
		node = h.node
	}
	cps, err := h.cl.FSM.AuditCheckpoints(node)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"node": node, "checkpoints": cps})
}

// AuditQuery returns the node's newest audit records matching q, oldest
// first.
func (c *Client) AuditQuery(ctx context.Context, q AuditQuery) (AuditRecords, error) {
	var out AuditRecords
	err := c.do(ctx, http.MethodGet, "/v1/audit", q.values(), nil, "", &out)
	return out, err
}

// AuditExport writes every record of the node's audit log matching q
// (Limit aside) to w as JSON lines, oldest first.
func (c *Client) AuditExport(ctx context.Context, q AuditQuery, w io.Writer) error {
	v := q.values()
	v.Del("limit")
	return c.do(ctx, http.MethodGet, "/v1/audit/export", v, nil, "", w)
}

// AuditVerify has the node verify its audit chain against its checkpoints.
func (c *Client) AuditVerify(ctx context.Context) (AuditVerifyResponse, error) {
	var out AuditVerifyResponse
	err := c.do(ctx, http.MethodGet, "/v1/audit/verify", nil, nil, "", &out)
	return out, err
}

// AuditCheckpoints returns the audit chain heads node committed through
// Raft ("" for the answering node), by record number.
func (c *Client) AuditCheckpoints(ctx context.Context, node string) ([]state.AuditCheckpoint, error) {
	q := url.Values{}
	if node != "" {
		q.Set("node", node)
	}
	var out struct {
		Checkpoints []state.AuditCheckpoint `json:"checkpoints"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/audit/checkpoints", q, nil, "", &out)
	if err != nil {
		return nil, fmt.Errorf("audit checkpoints: %w", err)
	}
	return out.Checkpoints, nil
}
