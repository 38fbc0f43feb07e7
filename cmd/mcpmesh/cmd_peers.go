package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/registry/state"
)

const peersUsage = `peers [-consistent] [-o json]

Shows the BU's peer BUs: each origin it imports tools from (imported
count, catalog version, last successful sync, last error, stale when no
sync succeeded for 3 minutes: its tools stay listed, marked stale; the
tools the origin switched off with a kill switch, with its reason) and
each trust domain it exports to (exported count, and how many of those
tools a kill switch of this BU stops). The leader pulls each origin's
catalog; every node answers from its replicated state. Agents call the
imported tools on /mcp as <namespace>.<tool>.`

func runPeers(ctx context.Context, args []string, stdout io.Writer) error {
	return showRead(ctx, "peers", peersUsage, args, stdout, (*api.Client).Peers, func(tw *tabwriter.Writer, res api.PeersResponse) {
		if len(res.Peers) == 0 {
			fmt.Fprintln(tw, "no peer BU: nothing is imported or exported (declare exports in exports.yaml and run mcpmesh apply)")
			return
		}
		fmt.Fprintln(tw, "NAMESPACE\tTRUST DOMAIN\tIMPORTED\tEXPORTED\tLAST SYNC\tSTATUS")
		for _, p := range res.Peers {
			ns, status, imported := p.Namespace, "ok", fmt.Sprint(p.Imported)
			if ns == "" {
				ns, status, imported = "-", "export only", "-"
			} else {
				if p.Stale {
					status = "stale"
				}
				if p.LastError != "" {
					status += ": " + p.LastError
				}
				if len(p.Refused) > 0 {
					var names []string
					for _, r := range p.Refused {
						names = append(names, r.Server+"@"+r.Version+" "+r.Name)
					}
					status += fmt.Sprintf("; refused changed definitions under the same version (kept the pinned ones): %s", strings.Join(names, ", "))
				}
				if len(p.Killed) > 0 {
					var names []string
					for _, k := range p.Killed {
						names = append(names, fmt.Sprintf("%s/%s (%s switch: %s)", k.Server, k.Name, k.Scope, k.Reason))
					}
					status += "; switched off by the origin (calls answered as killed here): " + strings.Join(names, ", ")
				}
			}
			if p.ExportedKilled > 0 {
				status += fmt.Sprintf("; %d exported tools killed here (the peer is told why)", p.ExportedKilled)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", ns, p.TrustDomain, imported, p.Exported, fmtTime(p.LastSync), status)
		}
	})
}

const exportsUsage = `exports [-consistent] [-o json]

Shows what the BU exports to other BUs, as declared in exports.yaml at the
top of the catalog directory given to mcpmesh apply (deny by default: only
the tools named reach the trust domains listed, and only live versions).
To change the exports, edit exports.yaml and run mcpmesh apply -f DIR.`

func runExports(ctx context.Context, args []string, stdout io.Writer) error {
	return showRead(ctx, "exports", exportsUsage, args, stdout, (*api.Client).Exports, func(tw *tabwriter.Writer, es state.Exports) {
		if len(es.Exports) == 0 {
			fmt.Fprintln(tw, "nothing is exported (declare exports in exports.yaml and run mcpmesh apply)")
			return
		}
		fmt.Fprintln(tw, "SERVER\tTOOLS\tVERSIONS\tTO\tPRINCIPALS\tSCOPES")
		for _, e := range es.Exports {
			versions := strings.Join(e.Versions, ",")
			if versions == "" {
				versions = "all"
			}
			for _, c := range e.To {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Server, strings.Join(e.Tools, ","), versions, c.TrustDomain,
					orDash(strings.Join(c.Principals, ",")), orDash(strings.Join(c.Scopes, ",")))
			}
		}
	})
}
