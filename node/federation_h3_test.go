package node

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestServeH3StripsForbiddenHeaders: what reaches an HTTP/3 peer carries
// none of the connection-specific headers RFC 9114 forbids (quic-go's
// client refuses such a response), whether the handler wrote an answer or
// left it to the server to send its headers.
func TestServeH3StripsForbiddenHeaders(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write bool
	}{{"an answer written", true}, {"nothing written", false}} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			serveH3(rec, httptest.NewRequest(http.MethodPost, "/", nil), http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				w.Header().Set("Connection", "keep-alive")
				w.Header().Set("Keep-Alive", "timeout=5")
				if tc.write {
					w.Write([]byte("data: {}\n\n"))
				}
			}))
			h := rec.Result().Header
			for _, k := range []string{"Connection", "Keep-Alive"} {
				if v := h.Get(k); v != "" {
					t.Errorf("%s: %s", k, v)
				}
			}
			if h.Get("Content-Type") != "text/event-stream" {
				t.Errorf("Content-Type lost: %q", h.Get("Content-Type"))
			}
		})
	}
}
