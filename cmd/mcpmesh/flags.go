package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/trust/ca"
)

// newFlagSet returns a FlagSet whose -h prints the usage line and flags.
func newFlagSet(name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: mcpmesh %s\n", usage)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags anywhere among the arguments (`show NAME -o json`
// works as well as `show -o json NAME`) and returns the positional ones.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if err == flag.ErrHelp {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// clientFlags are the flags every client command shares.
type clientFlags struct {
	addr      string
	tokenFile string
	svidDir   string
	output    string
	timeout   time.Duration
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.addr, "addr", envOr("MCPMESH_ADDR", "http://127.0.0.1:7101"), "node URL (env MCPMESH_ADDR)")
	fs.StringVar(&c.tokenFile, "token-file", os.Getenv("MCPMESH_TOKEN_FILE"), "file holding the admin token (env MCPMESH_TOKEN_FILE)")
	fs.StringVar(&c.svidDir, "svid-dir", os.Getenv("MCPMESH_SVID_DIR"), "directory with an admin SVID (svid.crt, svid.key, bundle.crt) for https nodes (env MCPMESH_SVID_DIR)")
	fs.StringVar(&c.output, "o", "table", "output format: table or json")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "request timeout")
}

// consistentFlag declares -consistent, which reads through the leader; what
// names what such a read sees (every committed write, or flush).
func consistentFlag(fs *flag.FlagSet, what string) *bool {
	return fs.Bool("consistent", false, "read through the leader (sees every committed "+what+")")
}

func (c *clientFlags) client() (*api.Client, error) {
	if c.output != "table" && c.output != "json" {
		return nil, usagef("-o %q: use table or json", c.output)
	}
	cfg := api.ClientConfig{Addr: c.addr, Timeout: c.timeout}
	if c.tokenFile != "" {
		raw, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("-token-file: %w", err)
		}
		cfg.Token = strings.TrimSpace(string(raw))
	}
	if c.svidDir != "" {
		tc, err := svidTLS(c.svidDir)
		if err != nil {
			return nil, err
		}
		cfg.TLS = tc
	}
	if cfg.Token == "" && cfg.TLS == nil {
		return nil, usagef("no credential: pass -token-file FILE (or set MCPMESH_TOKEN_FILE), or -svid-dir DIR")
	}
	return api.NewClient(cfg)
}

// svidTLS is the mTLS client config for an SVID directory (svid.crt,
// svid.key, bundle.crt): it presents the SVID and accepts only a node of
// the SVID's own trust domain.
func svidTLS(dir string) (*tls.Config, error) {
	s, bundle, err := ca.LoadSVID(dir)
	if err != nil {
		return nil, fmt.Errorf("-svid-dir: %w", err)
	}
	td := s.ID.TrustDomain()
	authz := tlsconfig.AdaptMatcher(func(id spiffeid.ID) error {
		if id.TrustDomain() != td || !strings.HasPrefix(id.Path(), "/mcpmesh/node/") {
			return fmt.Errorf("server %s is not an mcpmesh node of %s", id, td)
		}
		return nil
	})
	return tlsconfig.MTLSClientConfig(s, bundle, authz), nil
}

// connect returns the admin API client and a context for its requests,
// bounded by -timeout; call cancel when done. On an error there is nothing
// to cancel.
func (c *clientFlags) connect(parent context.Context) (*api.Client, context.Context, context.CancelFunc, error) {
	cl, err := c.client()
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(parent, c.timeout)
	return cl, ctx, cancel, nil
}

// print writes v as indented JSON when -o json, else calls table.
func (c *clientFlags) print(w io.Writer, v any, table func(tw *tabwriter.Writer)) error {
	if c.output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

// showRead runs a command that takes no arguments and shows one read of
// the admin API: the client flags and -consistent, then get, then the
// result as JSON (-o json) or as table writes it.
func showRead[T any](ctx context.Context, name, usage string, args []string, stdout io.Writer,
	get func(*api.Client, context.Context, bool) (T, error), table func(*tabwriter.Writer, T)) error {
	fs := newFlagSet(name, usage)
	var cf clientFlags
	cf.register(fs)
	consistent := consistentFlag(fs, "write")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("%s takes no arguments (got %q)", name, pos[0])
	}
	c, ctx, cancel, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	v, err := get(c, ctx, *consistent)
	if err != nil {
		return err
	}
	return cf.print(stdout, v, func(tw *tabwriter.Writer) { table(tw, v) })
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// splitRef splits NAME@VERSION.
func splitRef(ref string, needVersion bool) (name, version string, err error) {
	name, version, found := strings.Cut(ref, "@")
	if name == "" || (needVersion && (!found || version == "")) {
		if needVersion {
			return "", "", usagef("%q: want NAME@VERSION, e.g. corp.finance/ledger@1.0.0", ref)
		}
		return "", "", usagef("%q: want NAME or NAME@VERSION", ref)
	}
	return name, version, nil
}
