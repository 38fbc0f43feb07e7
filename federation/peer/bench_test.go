package peer

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/mcpmesh/mcpmesh/trust/mtls"
)

// BenchmarkRequest compares one small request over a warm connection:
// HTTP/3 over QUIC (this package) against HTTP/1.1 over TLS 1.3 with the
// same SPIFFE mTLS (keep-alive), both on loopback. Compare the two in one
// run (ratios), not absolute times.
func BenchmarkRequest(b *testing.B) {
	finance, hr := newBUB(b, financeTD), newBUB(b, hrTD)
	finance.trustB(b, hr)
	hr.trustB(b, finance)
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })

	b.Run("http3", func(b *testing.B) {
		srv, err := NewServer(ServerConfig{Listen: "127.0.0.1:0", TrustDomain: financeTD, SVID: finance.nodeB(b, "s"),
			Bundles: finance.set, OwnBundle: finance.set, Handler: ok})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go srv.Run(ctx)
		c, err := NewClient(ClientConfig{SVID: hr.nodeB(b, "c"), Bundles: hr.set})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		addr := srv.Addr().String()
		do := func() {
			req, _ := http.NewRequest(http.MethodGet, "/federation/v1/ping", nil)
			resp, err := c.Do(ctx, financeTD, addr, req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		do() // warm
		b.ReportAllocs()
		for b.Loop() {
			do()
		}
	})

	b.Run("http1.1+tls", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		hs := &http.Server{Handler: ok, TLSConfig: mtls.ServerConfig(finance.nodeB(b, "s"), finance.set, tlsconfig.AuthorizeAny(), "http/1.1")}
		go hs.ServeTLS(ln, "", "")
		defer hs.Close()
		tr := &http.Transport{TLSClientConfig: mtls.ClientConfig(hr.nodeB(b, "c"), hr.set, tlsconfig.AuthorizeMemberOf(financeTD), "http/1.1"), MaxIdleConnsPerHost: 1}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr}
		url := "https://" + ln.Addr().String() + "/federation/v1/ping"
		do := func() {
			resp, err := client.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		do() // warm
		b.ReportAllocs()
		for b.Loop() {
			do()
		}
	})
}
