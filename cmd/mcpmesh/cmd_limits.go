package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/mcpmesh/mcpmesh/registry/api"
)

const limitsUsage = `limits [show] [-consistent]

Shows the BU's rate limits, as declared in limits.yaml at the top of the
catalog directory given to mcpmesh apply, and the live replica count each
node divides them by (every node admits rate/N and burst/N, burst at least
1, so that the BU as a whole admits each limit once). To change the limits,
edit limits.yaml and run mcpmesh apply -f DIR.`

func runLimits(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "show" {
		args = args[1:]
	}
	return showRead(ctx, "limits", limitsUsage, args, stdout, (*api.Client).Limits, func(tw *tabwriter.Writer, ls api.LimitsResponse) {
		lr := ls.Replicas
		if len(ls.Limits.Limits) == 0 {
			fmt.Fprintln(tw, "no rate limit is set (declare them in limits.yaml and run mcpmesh apply)")
		} else {
			fmt.Fprintln(tw, "SCOPE\tRATE\tBURST\tPER NODE")
			for _, l := range ls.Limits.Limits {
				share := max(float64(l.Burst)/float64(lr.Count), 1)
				fmt.Fprintf(tw, "%s\t%s\t%d\t1/%d of the rate, burst %.4g\n", l.Scope(), l.Rate, l.Burst, lr.Count, share)
			}
		}
		if lr.Index == 0 {
			fmt.Fprintln(tw, "live replicas: 1 (no count committed yet)")
			return
		}
		fmt.Fprintf(tw, "live replicas: %s, observed by %s at %s\n", lr.String(), lr.Leader, fmtTime(lr.At))
	})
}
