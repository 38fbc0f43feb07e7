package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/sync/errgroup"
)

// op is one request to a target: a tools/call or a tools/list.
type op func(ctx context.Context, t *target) error

// callOp calls the target's echo tool with text and checks the answer.
func callOp(text string) op {
	args, _ := json.Marshal(map[string]string{"text": text})
	return func(ctx context.Context, t *target) error {
		res, err := t.session.CallTool(ctx, &mcp.CallToolParams{Name: t.tool, Arguments: json.RawMessage(args)})
		if err != nil {
			return err
		}
		if res.IsError || len(res.Content) != 1 {
			return fmt.Errorf("tool error or %d content blocks: %+v", len(res.Content), res)
		}
		if tc, ok := res.Content[0].(*mcp.TextContent); !ok || tc.Text != text {
			return fmt.Errorf("echo returned %+v, want the %d bytes sent", res.Content[0], len(text))
		}
		if sc, ok := res.StructuredContent.(map[string]any); !ok || sc["text"] != text {
			return fmt.Errorf("echo returned structuredContent %v, want {\"text\": the %d bytes sent}", res.StructuredContent, len(text))
		}
		return nil
	}
}

// listOp lists the target's tools and checks there is the one echo tool.
func listOp(ctx context.Context, t *target) error {
	res, err := t.session.ListTools(ctx, nil)
	if err != nil {
		return err
	}
	if len(res.Tools) != 1 || res.Tools[0].Name != t.tool {
		return fmt.Errorf("tools/list returned %d tools, want just %s", len(res.Tools), t.tool)
	}
	return nil
}

// proc is a process whose CPU time the harness reads.
type proc struct {
	name string
	pid  int
}

func (s *setup) procs() []proc {
	if s.fed != nil {
		return []proc{{"upstream", s.upstream.pid()}, {hrNode.name, s.fed.hr.pid()}, {financeNode.name, s.fed.finance.pid()}, {"client", os.Getpid()}}
	}
	procs := []proc{{"upstream", s.upstream.pid()}, {"proxy", s.proxy.pid()}, {"mcpmesh", s.node.pid()}, {"client", os.Getpid()}}
	if s.baseline != nil {
		procs = append(procs, proc{baselineNode.name, s.baseline.pid()})
	}
	return procs
}

// targetStats is what one target's measured rounds of a phase added up to.
type targetStats struct {
	t        *target
	lats     []time.Duration // every measured request, sorted once done
	roundP50 []time.Duration // p50 of each round
	wall     time.Duration
	ticks    []int64 // CPU of each of setup.procs, over this target's rounds
	upstream int64   // HTTP requests the upstream received in those rounds
	upConns  int64   // TCP connections the upstream accepted in those rounds
	dials    int64   // TCP connections the client opened in those rounds
}

// phase is the result of one interleaved measurement.
type phase struct {
	what        string
	concurrency int
	rounds      int
	perTarget   int
	warmup      int
	procs       []proc
	stats       []*targetStats // in setup.targets order
}

// runPhase runs warmup unmeasured requests per target, then calls measured
// ones per target in rounds; each round runs every target once, starting
// with a different one each round, so drift (frequency scaling, other
// load, GC of the client) falls on all three alike.
func runPhase(ctx context.Context, s *setup, what string, do op, calls, rounds, conc, warmup int) (*phase, error) {
	p := &phase{what: what, concurrency: conc, rounds: rounds, perTarget: calls, warmup: warmup, procs: s.procs()}
	for _, t := range s.targets {
		p.stats = append(p.stats, &targetStats{t: t, ticks: make([]int64, len(p.procs))})
		if _, err := runOps(ctx, t, do, warmup, conc); err != nil {
			return nil, fmt.Errorf("%s warmup: %w", what, err)
		}
	}
	for r := range rounds {
		n := calls / rounds
		if r < calls%rounds {
			n++
		}
		for i := range s.targets {
			st := p.stats[(r+i)%len(s.targets)]
			up0, err := s.upstreamStats(ctx)
			if err != nil {
				return nil, err
			}
			dials0 := st.t.dials.Load()
			cpu0, err := readTicks(p.procs)
			if err != nil {
				return nil, err
			}
			start := time.Now()
			lats, err := runOps(ctx, st.t, do, n, conc)
			wall := time.Since(start)
			if err != nil {
				return nil, fmt.Errorf("%s round %d: %w", what, r+1, err)
			}
			cpu1, err := readTicks(p.procs)
			if err != nil {
				return nil, err
			}
			dials1 := st.t.dials.Load()
			up1, err := s.upstreamStats(ctx)
			if err != nil {
				return nil, err
			}
			for j := range cpu0 {
				st.ticks[j] += cpu1[j] - cpu0[j]
			}
			st.upstream += up1.Requests - up0.Requests
			st.upConns += up1.Conns - up0.Conns
			st.dials += dials1 - dials0
			st.wall += wall
			st.lats = append(st.lats, lats...)
			slices.Sort(lats)
			st.roundP50 = append(st.roundP50, percentile(lats, 0.50))
		}
	}
	for _, st := range p.stats {
		slices.Sort(st.lats)
	}
	return p, nil
}

// runOps runs n requests against t, conc at a time on t's one session,
// and returns each one's latency.
func runOps(ctx context.Context, t *target, do op, n, conc int) ([]time.Duration, error) {
	lats := make([]time.Duration, n)
	var next atomic.Int64
	// Not errgroup.WithContext: its context ends when the round does, which
	// would cut the drain of the last response's stream (go-sdk reads an SSE
	// body to its end after handing the result over) and close a connection.
	var g errgroup.Group
	var failed atomic.Bool
	for range min(conc, max(n, 1)) {
		g.Go(func() error {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) || failed.Load() {
					return nil
				}
				start := time.Now()
				err := do(ctx, t)
				lats[i] = time.Since(start)
				if err != nil {
					failed.Store(true)
					return fmt.Errorf("%s, request %d: %w", t.name, i+1, err)
				}
			}
		})
	}
	return lats, g.Wait()
}

func readTicks(ps []proc) ([]int64, error) {
	out := make([]int64, len(ps))
	for i, p := range ps {
		v, err := cpuTicks(p.pid)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.name, err)
		}
		out[i] = v
	}
	return out, nil
}

// upstreamStats reads the upstream's counters. Its own connection, kept
// alive by the default client, is counted once, before the first round.
func (s *setup) upstreamStats(ctx context.Context) (upstreamStats, error) {
	var st upstreamStats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.upstreamURL+statsPath, nil)
	if err != nil {
		return st, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, fmt.Errorf("read the upstream's counters: %w", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("read the upstream's counters: %w", err)
	}
	return st, nil
}

// callPhase measures tools/call at one concurrency level.
func callPhase(ctx context.Context, o options, s *setup, conc int) (*phase, error) {
	return runPhase(ctx, s, "tools/call", callOp(strings.Repeat("x", o.payload)), o.calls, o.rounds, conc, o.warmup)
}

// listPhase measures tools/list, sequentially.
func listPhase(ctx context.Context, o options, s *setup) (*phase, error) {
	rounds := min(o.rounds, o.listCalls)
	return runPhase(ctx, s, "tools/list", listOp, o.listCalls, rounds, 1, min(o.warmup, o.listCalls))
}

// percentile is the nearest-rank percentile of sorted ds.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func mean(ds []time.Duration) time.Duration {
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(max(len(ds), 1))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d)/float64(time.Millisecond)) }

func signedMS(d time.Duration) string {
	return fmt.Sprintf("%+.3f", float64(d)/float64(time.Millisecond))
}

// cpuPerReq is a process's CPU per request over a target's rounds, in µs.
// vsDirect returns st's p50 and p99 less the direct target's, and the
// CPU its process spent per request; "-" for the direct target itself.
func (p *phase) vsDirect(st, direct *targetStats, s *setup) (p50, p99, cpu string) {
	if st == direct {
		return "-", "-", "-"
	}
	return signedMS(percentile(st.lats, 0.50) - percentile(direct.lats, 0.50)),
		signedMS(percentile(st.lats, 0.99) - percentile(direct.lats, 0.99)),
		fmt.Sprintf("%.0f", p.cpuPerReq(st, st.t.name, s.clkTck))
}

func (p *phase) cpuPerReq(st *targetStats, procName string, clkTck int64) float64 {
	for i, pr := range p.procs {
		if pr.name == procName {
			return float64(st.ticks[i]) * 1e6 / float64(clkTck) / float64(len(st.lats))
		}
	}
	return math.NaN()
}

// idleRate is a process's CPU while the harness drove the other targets,
// in ms per second: its background cost, included in its CPU per call.
func (p *phase) idleRate(procName, servedBy string, clkTck int64) float64 {
	var ticks int64
	var wall time.Duration
	for _, st := range p.stats {
		if st.t.name == servedBy {
			continue
		}
		for i, pr := range p.procs {
			if pr.name == procName {
				ticks += st.ticks[i]
			}
		}
		wall += st.wall
	}
	return float64(ticks) * 1e3 / float64(clkTck) / wall.Seconds()
}

func (p *phase) byName(name string) *targetStats {
	for _, st := range p.stats {
		if st.t.name == name {
			return st
		}
	}
	return nil
}

// aim is the bound on mcpmesh relative to the plain proxy.
const aim = 1.2

func (p *phase) print(w io.Writer, s *setup) {
	fmt.Fprintf(w, "%s, concurrency %d: %d rounds, %d measured calls per target (interleaved), %d warmup calls per target\n",
		p.what, p.concurrency, p.rounds, p.perTarget, p.warmup)
	direct, proxy, mesh := p.byName("direct"), p.byName("proxy"), p.byName("mcpmesh")
	d50, d99 := percentile(direct.lats, 0.50), percentile(direct.lats, 0.99)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tp50 ms\tp90 ms\tp99 ms\tmean ms\tcalls/s\tadded p50 ms\tadded p99 ms\tgateway CPU µs/call\tupstream CPU µs/call\tclient CPU µs/call\tupstream req/call\tnew conns client/upstream\t")
	for _, st := range p.stats {
		added50, added99, gw := p.vsDirect(st, direct, s)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.0f\t%s\t%s\t%s\t%.0f\t%.0f\t%.2f\t%d/%d\t\n", st.t.name,
			ms(percentile(st.lats, 0.50)), ms(percentile(st.lats, 0.90)), ms(percentile(st.lats, 0.99)), ms(mean(st.lats)),
			float64(len(st.lats))/st.wall.Seconds(), added50, added99, gw,
			p.cpuPerReq(st, "upstream", s.clkTck), p.cpuPerReq(st, "client", s.clkTck), float64(st.upstream)/float64(len(st.lats)),
			st.dials, st.upConns)
	}
	tw.Flush()

	a50p, a50m := percentile(proxy.lats, 0.50)-d50, percentile(mesh.lats, 0.50)-d50
	a99p, a99m := percentile(proxy.lats, 0.99)-d99, percentile(mesh.lats, 0.99)-d99
	cpuP, cpuM := p.cpuPerReq(proxy, "proxy", s.clkTck), p.cpuPerReq(mesh, "mcpmesh", s.clkTck)
	var perRound []float64
	for r := range direct.roundP50 {
		ap := proxy.roundP50[r] - direct.roundP50[r]
		if ap > 0 {
			perRound = append(perRound, float64(mesh.roundP50[r]-direct.roundP50[r])/float64(ap))
		}
	}
	slices.Sort(perRound)
	fmt.Fprintf(w, "mcpmesh / proxy: added p50 %s", ratio(a50m, a50p))
	if len(perRound) > 0 {
		fmt.Fprintf(w, " (per round: median %.2f×, range %.2f–%.2f×)", perRound[len(perRound)/2], perRound[0], perRound[len(perRound)-1])
	}
	fmt.Fprintf(w, ", added p99 %s, gateway CPU/call %.2f× (%.0f vs %.0f µs)\n", ratio(a99m, a99p), cpuM/cpuP, cpuM, cpuP)
	fmt.Fprintf(w, "aim (mcpmesh ≤ %.1f× the proxy): added p50 %s, CPU/call %s\n", aim, verdict(a50m, a50p), verdict(time.Duration(cpuM*1e3), time.Duration(cpuP*1e3)))
	if base := p.byName(baselineNode.name); base != nil {
		a50b, a99b := percentile(base.lats, 0.50)-d50, percentile(base.lats, 0.99)-d99
		cpuB := p.cpuPerReq(base, baselineNode.name, s.clkTck)
		fmt.Fprintf(w, "mcpmesh / baseline: added p50 %s, added p99 %s, gateway CPU/call %.2f× (%.0f vs %.0f µs); baseline / proxy: CPU/call %.2f×\n",
			ratio(a50m, a50b), ratio(a99m, a99b), cpuM/cpuB, cpuM, cpuB, cpuB/cpuP)
	}
	fmt.Fprintf(w, "background CPU while idle (during the other targets' rounds, included above): proxy %.1f ms/s, mcpmesh %.1f ms/s; load average now %s\n\n",
		p.idleRate("proxy", "proxy", s.clkTck), p.idleRate("mcpmesh", "mcpmesh", s.clkTck), loadAvg())
}

// ratio is a/b as "1.23×", or "n/a" when the proxy's figure b is not
// positive (at a high percentile under load, the proxy can come out
// faster than direct).
func ratio(a, b time.Duration) string {
	if b <= 0 {
		return "n/a (the divisor, the proxy's or the baseline's, is not positive)"
	}
	return fmt.Sprintf("%.2f×", float64(a)/float64(b))
}

func verdict(a, b time.Duration) string {
	if b <= 0 {
		return ratio(a, b)
	}
	if float64(a) <= aim*float64(b) {
		return ratio(a, b) + " met"
	}
	return ratio(a, b) + " NOT met"
}

// printList reports tools/list and fails when mcpmesh's reached the
// upstream: the gateway must answer it from the registry's state.
func (p *phase) printList(w io.Writer, s *setup) error {
	fmt.Fprintf(w, "%s, concurrency 1: %d rounds, %d measured calls per target (interleaved), %d warmup calls per target\n",
		p.what, p.rounds, p.perTarget, p.warmup)
	direct := p.byName("direct")
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tp50 ms\tp99 ms\tvs direct p50 ms\tvs direct p99 ms\tgateway CPU µs/list\tupstream requests\t")
	for _, st := range p.stats {
		rel50, rel99, gw := p.vsDirect(st, direct, s)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t\n", st.t.name, ms(percentile(st.lats, 0.50)), ms(percentile(st.lats, 0.99)), rel50, rel99, gw, st.upstream)
	}
	tw.Flush()
	w.Write(buf.Bytes())
	mesh := p.byName("mcpmesh")
	if direct.upstream != int64(len(direct.lats)) {
		return fmt.Errorf("direct tools/list: the upstream counted %d requests for %d lists; the counter (or the client's list cache) is off, so the mcpmesh check below proves nothing", direct.upstream, len(direct.lats))
	}
	if mesh.upstream != 0 {
		return fmt.Errorf("mcpmesh tools/list reached the upstream: %d upstream requests during %d lists, want 0 (tools/list must be answered from the registry state)", mesh.upstream, len(mesh.lats))
	}
	fmt.Fprintf(w, "mcpmesh answered %d tools/list with 0 upstream requests (direct: %d lists, %d upstream requests): no upstream round trip\n\n",
		len(mesh.lats), len(direct.lats), direct.upstream)
	return nil
}
