package servers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
)

// maxRecordedBody is how much of a request body Recorder reads to decode it;
// a longer body is passed on whole but not recorded.
const maxRecordedBody = 8 << 20

// RecordedRequest is one JSON-RPC request or notification an upstream
// received.
type RecordedRequest struct {
	// Method is the JSON-RPC method, such as "tools/call".
	Method string
	// ID is the request's JSON-RPC id as sent; nil for a notification.
	ID json.RawMessage
	// Params is the "params" member as sent; nil when absent.
	Params json.RawMessage
	// Header is a copy of the HTTP request's headers.
	Header http.Header
	// Done is set once the wrapped handler has answered the HTTP request.
	Done bool
	// Canceled is set when the HTTP request's context ended before the
	// wrapped handler returned: the client (or a gateway) went away
	// mid-call, which in the stateless era is how a call is cancelled.
	Canceled bool
}

// String summarizes the request for test failure messages: method, id,
// params and state; not the headers.
func (r RecordedRequest) String() string {
	id := "-"
	if len(r.ID) > 0 {
		id = string(r.ID)
	}
	return fmt.Sprintf("%s id=%s params=%s done=%v canceled=%v", r.Method, id, r.Params, r.Done, r.Canceled)
}

// ToolName returns the "name" of a tools/call's params, or "" for any other
// method.
func (r RecordedRequest) ToolName() string {
	if r.Method != "tools/call" {
		return ""
	}
	var p struct {
		Name string `json:"name"`
	}
	_ = json.Unmarshal(r.Params, &p) // a malformed call simply has no name
	return p.Name
}

// Recorder is an http.Handler that records the JSON-RPC requests and
// notifications POSTed to the handler it wraps, so a test can assert what an
// upstream saw: which calls arrived, with which arguments and headers (for
// example that no agent Authorization header did, or that a call with invalid
// arguments never did). Responses, GET streams and bodies that are not
// JSON-RPC are not recorded; the wrapped handler sees every request
// unchanged. The zero value is not usable; call NewRecorder. A Recorder is
// safe for concurrent use.
type Recorder struct {
	next http.Handler

	mu   sync.Mutex
	reqs []*RecordedRequest
}

// NewRecorder returns a Recorder in front of next.
func NewRecorder(next http.Handler) *Recorder {
	return &Recorder{next: next}
}

// ServeHTTP records the JSON-RPC messages of a POST body, then hands the
// request to the wrapped handler.
func (rec *Recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var mine []*RecordedRequest
	if req.Method == http.MethodPost && req.Body != nil {
		body, err := io.ReadAll(io.LimitReader(req.Body, maxRecordedBody+1))
		// Give the handler the whole body back, read or not.
		req.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(body), req.Body), req.Body}
		if err == nil && len(body) <= maxRecordedBody {
			mine = decodeMessages(body, req.Header)
		}
	}
	rec.mu.Lock()
	rec.reqs = append(rec.reqs, mine...)
	rec.mu.Unlock()

	rec.next.ServeHTTP(w, req)

	canceled := req.Context().Err() != nil
	rec.mu.Lock()
	for _, r := range mine {
		r.Done, r.Canceled = true, canceled
	}
	rec.mu.Unlock()
}

// decodeMessages returns the requests and notifications of a JSON-RPC body:
// one message or a batch. Responses are left out.
func decodeMessages(body []byte, h http.Header) []*RecordedRequest {
	type message struct {
		Method string          `json:"method"`
		ID     json.RawMessage `json:"id"`
		Params json.RawMessage `json:"params"`
	}
	var batch []message
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		if json.Unmarshal(trimmed, &batch) != nil {
			return nil
		}
	} else {
		var m message
		if json.Unmarshal(trimmed, &m) != nil {
			return nil
		}
		batch = []message{m}
	}
	var out []*RecordedRequest
	for _, m := range batch {
		if m.Method == "" {
			continue // a response to a server request
		}
		out = append(out, &RecordedRequest{Method: m.Method, ID: m.ID, Params: m.Params, Header: h.Clone()})
	}
	return out
}

// Requests returns copies of the recorded requests, in arrival order.
func (rec *Recorder) Requests() []RecordedRequest {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	out := make([]RecordedRequest, len(rec.reqs))
	for i, r := range rec.reqs {
		out[i] = *r
		out[i].Header = r.Header.Clone()
	}
	return out
}

// Calls returns the recorded tools/call requests for tool, or for every tool
// when tool is "", in arrival order.
func (rec *Recorder) Calls(tool string) []RecordedRequest {
	var out []RecordedRequest
	for _, r := range rec.Requests() {
		if n := r.ToolName(); r.Method == "tools/call" && (tool == "" || n == tool) {
			out = append(out, r)
		}
	}
	return out
}

// Reset forgets every recorded request.
func (rec *Recorder) Reset() {
	rec.mu.Lock()
	rec.reqs = nil
	rec.mu.Unlock()
}
