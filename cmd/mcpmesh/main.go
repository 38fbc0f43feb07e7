// Command mcpmesh is the single mcpmesh binary: `mcpmesh node` runs a node,
// and the other subcommands are clients of a node's admin API or offline
// tools (trust init/issue). Run `mcpmesh -h` for the list.
//
// This package stays thin: flags → config → a call into the packages that
// do the work.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout io.Writer) error
}

func commands() []command {
	return []command{
		{"node", "run one node of a BU's cluster (-config FILE)", runNode},
		{"dev", "run a two-BU dev mesh on loopback with the example catalog", runDev},
		{"trust", "manage the trust domain's CA and SVIDs (init, issue) and central security's federation manifest (manifest)", runTrust},
		{"registry", "submit and review server cards (submit, list, show, approve, reject, deprecate, retire, quarantine)", runRegistry},
		{"tenant", "manage tenants (add, list)", runTenant},
		{"apikey", "manage tenants' API keys for agents (create, list, revoke)", runAPIKey},
		{"profile", "pin server versions per agent (set, show, list, delete)", runProfile},
		{"policy", "Cedar policies: show the live set, eval or explain a request offline, print the schema", runPolicy},
		{"kill", "pull a kill switch on a tool, server, tenant or agent (KIND NAME -reason TEXT; -list)", runKill},
		{"revive", "release a kill switch (KIND NAME)", runRevive},
		{"limits", "show the rate limits and the live replica count they are shared by", runLimits},
		{"peers", "peer BUs: imported and exported tool counts, last catalog sync, errors, staleness", runPeers},
		{"exports", "show what the BU exports to other BUs' trust domains (exports.yaml)", runExports},
		{"approvals", "calls held for a human's approval (list, approve, deny)", runApprovals},
		{"apply", "apply a catalog directory of server cards, tenants.yaml, *.cedar policies, limits.yaml and exports.yaml (-f DIR [-dry-run])", runApply},
		{"call", "list or call tools through a node's MCP endpoint, as an agent", runCall},
		{"audit", "the node's tamper-evident audit log (verify, query, export)", runAudit},
		{"usage", "calls and cost per tenant, tool and calling BU: the chargeback (report; quotas)", runUsage},
		{"members", "list the cluster's Raft servers, roles and last contact", runMembers},
		{"operator", "cluster operations (snapshot save/restore, join, remove)", runOperator},
		{"version", "print the version", func(_ context.Context, _ []string, w io.Writer) error {
			fmt.Fprintln(w, "mcpmesh", version)
			return nil
		}},
	}
}

// subcommand is one subcommand of a command group such as `registry`.
type subcommand struct {
	name string
	run  func(ctx context.Context, args []string, stdout io.Writer) error
}

// dispatch runs the subcommand of group that args name, or prints the
// group's usage for -h.
func dispatch(ctx context.Context, group string, args []string, stdout io.Writer, subs []subcommand) error {
	var names []string
	for _, s := range subs {
		names = append(names, s.name)
	}
	want := strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
	if len(args) == 0 {
		return usagef("want a subcommand: %s", want)
	}
	if args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintf(stdout, "Usage: mcpmesh %s %s [flags]  (each takes -h)\n", group, strings.Join(names, "|"))
		return nil
	}
	for _, s := range subs {
		if s.name == args[0] {
			return s.run(ctx, args[1:], stdout)
		}
	}
	return usagef("unknown subcommand %q; want %s", args[0], want)
}

// usageError marks a mistake in how a command was called (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		}
		fmt.Fprintf(stderr, "mcpmesh %s: %s\n", c.name, oneLine(err.Error()))
		var ue usageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	fmt.Fprintf(stderr, "mcpmesh: unknown command %q; run `mcpmesh -h` for the list\n", args[0])
	return 2
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "mcpmesh — a federated MCP gateway for business units.")
	fmt.Fprintln(w, "\nUsage: mcpmesh <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nEvery command takes -h. Client commands take -addr, -token-file (or -svid-dir) and -o json.")
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
