package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"text/tabwriter"
	"time"
)

// fedAim is the bound on the second hop: it adds no more latency
// and CPU than the first hop through the local node does.
const fedAim = 1.0

func printFederationHeader(o options, s *setup) {
	fmt.Printf("gatewayload -federation: tools/call direct, through hr's node (local) and through hr's node then finance's over HTTP/3 (crossbu)\n")
	fmt.Printf("  machine: %d CPUs, GOMAXPROCS %d, %s %s/%s; clock ticks %d/s (%s), so CPU is read in %s steps\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), runtime.GOOS, runtime.GOARCH, s.clkTck, s.clkTckSource, time.Second/time.Duration(s.clkTck))
	fmt.Printf("  era %s at the client and the upstream (negotiated: %s); go-sdk client, one session per target; echo of %d bytes\n", o.era, negotiated(s.targets), o.payload)
	node := describeBinary(o.bin)
	if o.profileDir != "" {
		node = "profiling variant, CPU profiles in " + o.profileDir
	}
	fmt.Printf("  processes: upstream pid %d, hr node pid %d, finance node pid %d (%s, log.level %s), client pid %d\n",
		s.upstream.pid(), s.fed.hr.pid(), s.fed.finance.pid(), node, o.nodeLogLevel, os.Getpid())
	fmt.Printf("  load average at start: %s (other work on the machine shows up as noise: compare ratios within one run)\n", loadAvg())
	fmt.Println()
}

// printFederation reports a -federation phase: per target, latency, the
// CPU per call of each node, and the second hop against the first.
func (p *phase) printFederation(w io.Writer, s *setup) {
	fmt.Fprintf(w, "%s, concurrency %d: %d rounds, %d measured calls per target (interleaved), %d warmup calls per target\n",
		p.what, p.concurrency, p.rounds, p.perTarget, p.warmup)
	direct, local, cross := p.byName("direct"), p.byName("local"), p.byName("crossbu")
	d50, d99 := percentile(direct.lats, 0.50), percentile(direct.lats, 0.99)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tp50 ms\tp90 ms\tp99 ms\tmean ms\tcalls/s\tadded p50 ms\tadded p99 ms\thr CPU µs/call\tfinance CPU µs/call\tupstream CPU µs/call\tclient CPU µs/call\tupstream req/call\tnew conns client/upstream\t")
	for _, st := range p.stats {
		a50, a99 := "-", "-"
		if st != direct {
			a50, a99 = signedMS(percentile(st.lats, 0.50)-d50), signedMS(percentile(st.lats, 0.99)-d99)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.0f\t%s\t%s\t%.0f\t%.0f\t%.0f\t%.0f\t%.2f\t%d/%d\t\n", st.t.name,
			ms(percentile(st.lats, 0.50)), ms(percentile(st.lats, 0.90)), ms(percentile(st.lats, 0.99)), ms(mean(st.lats)),
			float64(len(st.lats))/st.wall.Seconds(), a50, a99,
			p.cpuPerReq(st, hrNode.name, s.clkTck), p.cpuPerReq(st, financeNode.name, s.clkTck),
			p.cpuPerReq(st, "upstream", s.clkTck), p.cpuPerReq(st, "client", s.clkTck),
			float64(st.upstream)/float64(len(st.lats)), st.dials, st.upConns)
	}
	tw.Flush()

	// The first hop is what hr's node adds to a direct call; the second,
	// what going on to finance adds to that.
	first50, second50 := percentile(local.lats, 0.50)-d50, percentile(cross.lats, 0.50)-percentile(local.lats, 0.50)
	first99, second99 := percentile(local.lats, 0.99)-d99, percentile(cross.lats, 0.99)-percentile(local.lats, 0.99)
	var perRound []float64
	for r := range direct.roundP50 {
		if f := local.roundP50[r] - direct.roundP50[r]; f > 0 {
			perRound = append(perRound, float64(cross.roundP50[r]-local.roundP50[r])/float64(f))
		}
	}
	slices.Sort(perRound)
	fmt.Fprintf(w, "latency, second hop / first hop: p50 %s (%s vs %s ms)", hopRatio(second50, first50), signedMS(second50), signedMS(first50))
	if len(perRound) > 0 {
		fmt.Fprintf(w, " (per round: median %.2f×, range %.2f–%.2f×)", perRound[len(perRound)/2], perRound[0], perRound[len(perRound)-1])
	}
	fmt.Fprintf(w, ", p99 %s (%s vs %s ms)\n", hopRatio(second99, first99), signedMS(second99), signedMS(first99))
	hrLocal, hrCross := p.cpuPerReq(local, hrNode.name, s.clkTck), p.cpuPerReq(cross, hrNode.name, s.clkTck)
	finCross := p.cpuPerReq(cross, financeNode.name, s.clkTck)
	fmt.Fprintf(w, "CPU per call: finance on crossbu / hr on local %.2f× (%.0f vs %.0f µs); hr on crossbu / hr on local %.2f× (%.0f vs %.0f µs); both nodes on crossbu / hr on local %.2f×\n",
		finCross/hrLocal, finCross, hrLocal, hrCross/hrLocal, hrCross, hrLocal, (hrCross+finCross)/hrLocal)
	fmt.Fprintf(w, "aim (second hop ≤ %.1f× the first): added p50 %s, CPU/call (finance's on crossbu vs hr's on local) %s\n",
		fedAim, hopVerdict(float64(second50), float64(first50)), hopVerdict(finCross, hrLocal))
	fmt.Fprintf(w, "background CPU while idle (during the other targets' rounds, included above): finance %.1f ms/s; load average now %s\n\n",
		p.idleRate(financeNode.name, "crossbu", s.clkTck), loadAvg())
}

// hopRatio is a/b as "1.23×", or "n/a" when the first hop b is not
// positive.
func hopRatio(a, b time.Duration) string {
	if b <= 0 {
		return "n/a (the first hop's is not positive)"
	}
	return fmt.Sprintf("%.2f×", float64(a)/float64(b))
}

func hopVerdict(a, b float64) string {
	if b <= 0 {
		return "n/a (the first hop's is not positive)"
	}
	r := fmt.Sprintf("%.2f×", a/b)
	if a <= fedAim*b {
		return r + " met"
	}
	return r + " NOT met"
}
