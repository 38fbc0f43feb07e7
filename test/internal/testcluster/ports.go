package testcluster

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
)

var (
	stableMu   sync.Mutex
	stableUsed = map[int]bool{}
)

// StablePort returns a loopback address with a port that was free a moment
// ago and lies below the kernel's ephemeral port range, unique within this
// test process.
//
// FreePort's ports come from the ephemeral range. While a node is down
// (killed, or not yet started), any outgoing connection on the machine may
// get its port as a source port, and the node then cannot bind it again
// ("address already in use"); on a busy machine running clusters in
// parallel this happens. A port outside the range is only ever taken by an
// explicit bind.
func StablePort(t TB) string {
	t.Helper()
	lo := ephemeralLow()
	const from = 10000
	if lo-from < 1000 {
		return FreePort(t)
	}
	stableMu.Lock()
	defer stableMu.Unlock()
	for range 1000 {
		p := from + rand.IntN(lo-from)
		if stableUsed[p] {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		addr := ln.Addr().String()
		ln.Close()
		stableUsed[p] = true
		return addr
	}
	t.Fatalf("no free port found in %d-%d", from, lo-1)
	return ""
}

// ephemeralLow returns the first port of the kernel's ephemeral range
// (Linux's default when it cannot be read).
func ephemeralLow() int {
	lo := 32768
	if raw, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		fmt.Sscanf(strings.TrimSpace(string(raw)), "%d", &lo)
	}
	return lo
}

// port returns a node listener address: a StablePort, on Options.Host
// when set (a port free on loopback is as good as any in a fresh network
// namespace).
func (c *Cluster) port() string {
	c.t.Helper()
	addr := StablePort(c.t)
	if c.Opts.Host == "" {
		return addr
	}
	_, p, _ := net.SplitHostPort(addr)
	return net.JoinHostPort(c.Opts.Host, p)
}
