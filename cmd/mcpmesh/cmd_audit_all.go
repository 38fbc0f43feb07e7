package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/mcpmesh/mcpmesh/registry/api"
)

// allUsage documents -all of audit query and export.
const allUsage = "every replica of the BU: the members `mcpmesh members` lists, each asked at its admin API with the same credential and filters; records merged by time, then node, then number, each labelled with its node. A replica that does not answer is named and the exit status is 1"

// auditQueryAll prints the BU-wide answer to q, then fails if it is
// partial.
func auditQueryAll(ctx context.Context, c *api.Client, q api.AuditQuery, cf *clientFlags, stdout io.Writer) error {
	res, err := c.AuditQueryAll(ctx, q)
	if err != nil {
		return err
	}
	err = cf.print(stdout, res, func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "NODE\tSEQ\tTIME\tKIND\tPRINCIPAL\tTENANT\tWHAT\tOUTCOME\tCODE\tMS\tREQUEST")
		for _, r := range res.Records {
			fmt.Fprintf(tw, "%s\t%s\n", r.Node, recordRow(r))
		}
		if len(res.Records) == 0 {
			fmt.Fprintf(tw, "no record of nodes %s matches\n", orDash(strings.Join(res.Nodes, ", ")))
		}
		for _, m := range res.Missing {
			fmt.Fprintf(tw, "PARTIAL: no records from node %s: %s\n", m.Node, m.Error)
		}
	})
	if err != nil {
		return err
	}
	return partialError(res.Missing)
}

// partialError is the error of a BU-wide answer that misses the records
// of some replicas (nil if none).
func partialError(missing []api.MissingNode) error {
	if len(missing) == 0 {
		return nil
	}
	parts := make([]string, len(missing))
	for i, m := range missing {
		parts[i] = fmt.Sprintf("node %s (%s)", m.Node, m.Error)
	}
	return fmt.Errorf("partial answer: the records of %s are missing; the other replicas' are printed. Bring the node back (or query it with -addr once it is) and ask again", strings.Join(parts, "; "))
}
