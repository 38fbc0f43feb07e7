package bundles

import (
	"crypto/tls"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

// TestFetchBundleBounds: a bundle endpoint's answer is read up to
// MaxBundleSize; a bigger one, an error status and a server with another
// SPIFFE ID are refused, and a good one parses.
func TestFetchBundleBounds(t *testing.T) {
	finance := newCA(t, financeTD)
	base := ownBundle(t, finance)
	id := spiffeid.RequireFromPath(financeTD, "/mcpmesh/node/n1")
	svid, err := finance.IssueX509SVID(id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	good, err := base.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var answer func(w http.ResponseWriter)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { answer(w) }))
	srv.Listener = tls.NewListener(srv.Listener, tlsconfig.TLSServerConfig(svid))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.Start()
	t.Cleanup(srv.Close)
	url := "https://" + srv.Listener.Addr().String() + "/"

	answer = func(w http.ResponseWriter) { w.Write(good) }
	if b, err := fetchBundle(t.Context(), financeTD, url, base, id); err != nil || !b.Equal(base) {
		t.Fatalf("good bundle: %v, %v", b, err)
	}
	answer = func(w http.ResponseWriter) { w.Write([]byte(strings.Repeat(" ", MaxBundleSize+1))) }
	if _, err := fetchBundle(t.Context(), financeTD, url, base, id); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("oversized answer: %v; want refused for its size", err)
	}
	answer = func(w http.ResponseWriter) { http.Error(w, "no", http.StatusInternalServerError) }
	if _, err := fetchBundle(t.Context(), financeTD, url, base, id); err == nil || !strings.Contains(err.Error(), "500") {
		t.Errorf("error status: %v; want refused naming the status", err)
	}
	answer = func(w http.ResponseWriter) { w.Write(good) }
	other := spiffeid.RequireFromPath(financeTD, "/mcpmesh/node/n2")
	if _, err := fetchBundle(t.Context(), financeTD, url, base, other); err == nil {
		t.Error("a server with another SPIFFE ID than the endpoint's was accepted")
	}
}
