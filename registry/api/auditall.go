package api

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/mcpmesh/mcpmesh/node/audit"
	"github.com/mcpmesh/mcpmesh/registry/cluster"
)

// Each replica of a BU keeps its own audit chain: a call is on the record
// of the node that served it. A BU-wide answer (`mcpmesh audit query -all`,
// `audit export -all`) is assembled by the client: it asks the node it
// talks to for the cluster's members (GET /v1/operator/members, which
// gives each member's admin API URL as the member reports it), asks every
// member with the same credential and filter, and merges the answers by
// time, then node id, then record number. A member that does not answer
// is named in the answer (Missing, Partial), never silently left out: the
// answer is then partial, and the CLI exits non-zero.

// MissingNode is a replica whose records are not (or not all) in a
// BU-wide answer, and why.
type MissingNode struct {
	Node string `json:"node"`
	// URL is the admin API URL the replica reported; empty when the
	// cluster could not reach it to ask.
	URL   string `json:"url,omitempty"`
	Error string `json:"error"`
}

// AuditAllRecords is the answer of an audit query across every replica of
// the BU.
type AuditAllRecords struct {
	// Nodes are the ids of the replicas whose records are included.
	Nodes []string `json:"nodes"`
	// Partial is true when some replica's records are missing; Missing
	// names each.
	Partial bool          `json:"partial"`
	Missing []MissingNode `json:"missing,omitempty"`
	// Records are the newest matches across the replicas (at most the
	// query's limit), oldest first, ordered by time, then node, then
	// record number. Each record's Node names the replica that wrote it.
	Records []audit.Record `json:"records"`
}

// At returns a client of the node at addr (a base URL) with c's
// credential, TLS configuration and timeout.
func (c *Client) At(addr string) (*Client, error) {
	n, err := NewClient(ClientConfig{Addr: addr})
	if err != nil {
		return nil, err
	}
	n.token, n.http = c.token, c.http
	return n, nil
}

// replica is one member of the cluster as a BU-wide audit request reaches
// it: a client, or why there is none.
type replica struct {
	id     string
	url    string
	client *Client
	err    error
}

// replicas lists the cluster's members, each with a client at the admin
// API URL it reports.
func (c *Client) replicas(ctx context.Context) ([]replica, error) {
	m, err := c.Members(ctx)
	if err != nil {
		return nil, fmt.Errorf("list the cluster's members to reach every replica: %w", err)
	}
	// The node asks each member for its status within a second; a busy
	// member may miss that once. Ask again before calling it unreachable.
	if slices.ContainsFunc(m.Members, func(mem cluster.Member) bool { return mem.APIURL == "" }) {
		if again, err := c.Members(ctx); err == nil {
			for i := range m.Members {
				for _, a := range again.Members {
					if a.ID == m.Members[i].ID && m.Members[i].APIURL == "" && a.APIURL != "" {
						m.Members[i] = a
					}
				}
			}
		}
	}
	out := make([]replica, 0, len(m.Members))
	for _, mem := range m.Members {
		r := replica{id: mem.ID, url: mem.APIURL}
		switch {
		case mem.APIURL == "" && mem.Role == "unreachable":
			r.err = fmt.Errorf("unreachable from the node asked (%s)", cmp.Or(mem.Error, "no answer"))
		case mem.APIURL == "":
			r.err = errors.New("reports no admin API address (a node of an older version?); query it with -addr")
		default:
			r.client, r.err = c.At(mem.APIURL)
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b replica) int { return cmp.Compare(a.id, b.id) })
	return out, nil
}

// AuditQueryAll queries every replica of the BU with q and merges their
// answers; see AuditAllRecords. It fails only when it cannot learn the
// replicas; a replica that does not answer is in Missing.
func (c *Client) AuditQueryAll(ctx context.Context, q AuditQuery) (AuditAllRecords, error) {
	reps, err := c.replicas(ctx)
	if err != nil {
		return AuditAllRecords{}, err
	}
	q.Limit = clampLimit(q.Limit)
	answers := make([][]audit.Record, len(reps))
	var wg sync.WaitGroup
	for i := range reps {
		if reps[i].err != nil {
			continue
		}
		wg.Go(func() {
			res, err := reps[i].client.AuditQuery(ctx, q)
			switch {
			case err != nil:
				reps[i].err = err
			case res.Node != reps[i].id:
				reps[i].err = fmt.Errorf("the node at %s answered as %q", reps[i].url, res.Node)
			default:
				answers[i] = res.Records
			}
		})
	}
	wg.Wait()
	out := AuditAllRecords{Nodes: []string{}}
	for _, r := range reps {
		if r.err != nil {
			out.Missing = append(out.Missing, MissingNode{Node: r.id, URL: r.url, Error: r.err.Error()})
			continue
		}
		out.Nodes = append(out.Nodes, r.id)
	}
	out.Partial = len(out.Missing) > 0
	out.Records = mergeNewest(answers, q.Limit)
	return out, nil
}

// clampLimit is the number of records a query returns for limit, as the
// node counts it (audit.DefaultLimit, audit.MaxLimit).
func clampLimit(limit int) int {
	switch {
	case limit <= 0:
		return audit.DefaultLimit
	case limit > audit.MaxLimit:
		return audit.MaxLimit
	}
	return limit
}

// compareRecords orders records by time, then node, then record number.
func compareRecords(a, b audit.Record) int {
	return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.Node, b.Node), cmp.Compare(a.Seq, b.Seq))
}

// mergeNewest merges the replicas' answers, each the newest matches of
// one replica, and keeps the newest limit of them, oldest first. The
// newest limit across replicas are among each one's newest limit, so
// asking each for limit is enough.
func mergeNewest(answers [][]audit.Record, limit int) []audit.Record {
	all := []audit.Record{}
	for _, a := range answers {
		all = append(all, a...)
	}
	slices.SortStableFunc(all, compareRecords)
	if len(all) > limit {
		all = all[len(all)-limit:]
	}
	return all
}

// ExportTrailer is the last line of a BU-wide export that is partial: it
// is not a record (it has no seq, time or kind), and names the replicas
// whose records are missing or incomplete.
type ExportTrailer struct {
	Partial bool          `json:"partial"`
	Missing []MissingNode `json:"missing"`
}

// AuditExportAll writes every record matching q (Limit aside) of every
// replica of the BU to w as JSON lines, each exactly as its node sent it,
// merged by time, then node, then record number (a k-way merge of the
// nodes' streams, each in its chain's order, so nothing is held in
// memory). It returns the replicas whose records are missing or
// incomplete; when there are any, it ends the output with an
// ExportTrailer line. It fails when it cannot learn the replicas or
// cannot write to w.
func (c *Client) AuditExportAll(ctx context.Context, q AuditQuery, w io.Writer) ([]MissingNode, error) {
	reps, err := c.replicas(ctx)
	if err != nil {
		return nil, err
	}
	// On return: the pipes close, the requests are cancelled, then their
	// goroutines are waited for (defers run last first).
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	streams := make([]*exportStream, len(reps))
	for i, r := range reps {
		if r.err != nil {
			continue
		}
		pr, pw := io.Pipe()
		streams[i] = &exportStream{node: r.id, dec: json.NewDecoder(pr)}
		defer pr.Close() // unblocks the writer below if the merge stops early
		wg.Go(func() { pw.CloseWithError(r.client.AuditExport(ctx, q, pw)) })
	}
	failed := make([]error, len(reps))
	for i, r := range reps {
		failed[i] = r.err
	}
	if err := mergeExports(w, streams, failed); err != nil {
		return nil, err
	}
	var missing []MissingNode
	for i, r := range reps {
		if failed[i] != nil {
			missing = append(missing, MissingNode{Node: r.id, URL: r.url, Error: failed[i].Error()})
		}
	}
	if len(missing) > 0 {
		line, _ := json.Marshal(ExportTrailer{Partial: true, Missing: missing})
		if _, err := w.Write(append(line, '\n')); err != nil {
			return missing, fmt.Errorf("write the export: %w", err)
		}
	}
	return missing, nil
}

// mergeExports writes the records of streams (nil ones skipped) to w,
// merged by time, then node, then record number, each stream in its own
// order. A stream that fails is dropped at that point, its error put in
// failed at its index. It fails only when w does.
func mergeExports(w io.Writer, streams []*exportStream, failed []error) error {
	heads := make([]*exportStream, 0, len(streams))
	for i, s := range streams {
		if s == nil {
			continue
		}
		s.index = i
		if err := s.next(); err != nil {
			failed[i] = err
		} else if s.raw != nil {
			heads = append(heads, s)
		}
	}
	for len(heads) > 0 {
		// A handful of replicas: a linear scan beats a heap.
		first := 0
		for j := 1; j < len(heads); j++ {
			if heads[j].less(heads[first]) {
				first = j
			}
		}
		s := heads[first]
		if _, err := w.Write(append(s.raw, '\n')); err != nil {
			return fmt.Errorf("write the export: %w", err)
		}
		if err := s.next(); err != nil {
			failed[s.index] = fmt.Errorf("stopped after %d records: %w", s.count, err)
		}
		if s.raw == nil {
			heads = slices.Delete(heads, first, first+1)
		}
	}
	return nil
}

// exportStream is one replica's export being merged: its current record
// (raw as sent, nil at the end) and the keys it is ordered by.
type exportStream struct {
	node  string
	index int
	dec   *json.Decoder
	raw   json.RawMessage
	key   struct {
		Seq  uint64    `json:"seq"`
		Time time.Time `json:"time"`
		Node string    `json:"node"`
	}
	count int
}

// next reads the stream's next record; at the end raw is nil.
func (s *exportStream) next() error {
	s.raw = nil
	var raw json.RawMessage
	if err := s.dec.Decode(&raw); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return err
	}
	s.key.Seq, s.key.Time, s.key.Node = 0, time.Time{}, ""
	if err := json.Unmarshal(raw, &s.key); err != nil {
		return fmt.Errorf("record %d is not an audit record: %w", s.count+1, err)
	}
	if s.key.Node != s.node {
		return fmt.Errorf("record %d is node %q's, not %q's", s.count+1, s.key.Node, s.node)
	}
	s.raw = bytes.TrimSpace(raw)
	s.count++
	return nil
}

func (s *exportStream) less(o *exportStream) bool {
	return cmp.Or(s.key.Time.Compare(o.key.Time), cmp.Compare(s.node, o.node), cmp.Compare(s.key.Seq, o.key.Seq)) < 0
}
