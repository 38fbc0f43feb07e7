package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mcpmesh/mcpmesh/registry/api"
	"github.com/mcpmesh/mcpmesh/trust/manifest"
)

// Central security's key files, as keygen writes them.
const (
	centralKeyFile = "central.key"
	centralPubFile = "central.pub"
)

func runTrustManifest(ctx context.Context, args []string, stdout io.Writer) error {
	return dispatch(ctx, "trust manifest", args, stdout, []subcommand{
		{"keygen", func(_ context.Context, args []string, stdout io.Writer) error { return manifestKeygen(args, stdout) }},
		{"sign", func(_ context.Context, args []string, stdout io.Writer) error { return manifestSign(args, stdout) }},
		{"verify", func(_ context.Context, args []string, stdout io.Writer) error { return manifestVerify(args, stdout) }},
		{"push", manifestPush},
		{"show", manifestShow},
	})
}

func manifestKeygen(args []string, stdout io.Writer) error {
	fs := newFlagSet("trust manifest keygen", "trust manifest keygen -out DIR [-alg es256|ed25519]\n\nWrites central security's signing key (DIR/central.key, keep it offline) and its public half (DIR/central.pub, which every node names in federation.manifest_key_file).")
	out := fs.String("out", "", "directory to write central.key and central.pub to (created if missing)")
	algName := fs.String("alg", "es256", "key type: es256 (ECDSA P-256) or ed25519")
	if err := noArgs(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return usagef("want -out DIR, the directory to write central.key and central.pub to")
	}
	alg, err := manifest.ParseAlgorithm(*algName)
	if err != nil {
		return usagef("-alg: %v", err)
	}
	key, err := manifest.GenerateKey(alg)
	if err != nil {
		return err
	}
	priv, err := manifest.MarshalPrivateKey(key)
	if err != nil {
		return err
	}
	pub, err := manifest.MarshalPublicKey(key.Public())
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o700); err != nil {
		return fmt.Errorf("-out: %w", err)
	}
	keyPath, pubPath := filepath.Join(*out, centralKeyFile), filepath.Join(*out, centralPubFile)
	for _, p := range []string{keyPath, pubPath} {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%s exists; keygen never overwrites a key: choose another -out, or move the old key away first", p)
		}
	}
	if err := writeNew(keyPath, priv, 0o600); err != nil {
		return err
	}
	if err := writeNew(pubPath, pub, 0o644); err != nil {
		return err
	}
	kid, _ := manifest.KeyID(key.Public())
	fmt.Fprintf(stdout, "wrote %s (%s; keep it secret and offline) and %s (kid %s); every node names %s in federation.manifest_key_file\n",
		keyPath, alg, pubPath, kid, centralPubFile)
	return nil
}

// writeNew writes a file that must not exist yet.
func writeNew(path string, data []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// noArgs parses flags and refuses positional arguments.
func noArgs(fs *flag.FlagSet, args []string) error {
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q; every input is a flag (-h lists them)", pos[0])
	}
	return nil
}

func manifestSign(args []string, stdout io.Writer) error {
	fs := newFlagSet("trust manifest sign", "trust manifest sign -key central.key -f manifest.yaml [-o manifest.jws]\n\nValidates the manifest, then signs it with central security's key. Without -o the signed form goes to standard output.")
	keyPath := fs.String("key", "", "central security's signing key (central.key from keygen)")
	file := fs.String("f", "", "the manifest, in YAML (see the README)")
	out := fs.String("o", "", "file to write the signed manifest to (default: standard output)")
	if err := noArgs(fs, args); err != nil {
		return err
	}
	if *keyPath == "" || *file == "" {
		return usagef("want -key central.key and -f manifest.yaml")
	}
	data, err := os.ReadFile(*file)
	if err != nil {
		return fmt.Errorf("-f: %w", err)
	}
	m, err := manifest.Parse(data)
	if err != nil {
		return fmt.Errorf("%s: %w", *file, err)
	}
	now := time.Now()
	if m.Expired(now) {
		return fmt.Errorf("%s: expires %s is already past; set a later expires (and a higher version) before signing", *file, m.Expires.UTC().Format(time.RFC3339))
	}
	key, err := manifest.LoadPrivateKeyFile(*keyPath)
	if err != nil {
		return err
	}
	signed, err := manifest.Sign(m, key)
	if err != nil {
		return err
	}
	if *out == "" {
		_, err := fmt.Fprintf(stdout, "%s\n", signed)
		return err
	}
	if err := os.WriteFile(*out, append(signed, '\n'), 0o644); err != nil {
		return fmt.Errorf("-o: %w", err)
	}
	kid, _ := manifest.KeyID(key.Public())
	fmt.Fprintf(stdout, "signed version %d (expires %s, %d trust domains, %d relationships) with kid %s into %s; push it with `mcpmesh trust manifest push -f %s`\n",
		m.Version, m.Expires.UTC().Format(time.RFC3339), len(m.TrustDomains), len(m.Relationships), kid, *out, *out)
	return nil
}

func manifestVerify(args []string, stdout io.Writer) error {
	fs := newFlagSet("trust manifest verify", "trust manifest verify -pub central.pub -f manifest.jws [-o json]\n\nChecks a signed manifest offline, as a node would, and prints it.")
	pubPath := fs.String("pub", "", "central security's public key (central.pub)")
	file := fs.String("f", "", "the signed manifest")
	output := fs.String("o", "table", "output format: table or json")
	if err := noArgs(fs, args); err != nil {
		return err
	}
	if *pubPath == "" || *file == "" {
		return usagef("want -pub central.pub and -f manifest.jws")
	}
	if *output != "table" && *output != "json" {
		return usagef("-o %q: use table or json", *output)
	}
	pub, err := manifest.LoadPublicKeyFile(*pubPath)
	if err != nil {
		return err
	}
	signed, err := os.ReadFile(*file)
	if err != nil {
		return fmt.Errorf("-f: %w", err)
	}
	m, err := manifest.Verify(signed, pub, time.Now())
	if err != nil {
		return fmt.Errorf("%s: %w", *file, err)
	}
	kid, _ := manifest.KeyID(pub)
	out := api.ManifestResponse{Version: m.Version, Expires: m.Expires.UTC(), TrustDomains: m.TrustDomains, Relationships: m.Relationships, KeyID: kid, Signed: string(m.Signed())}
	cf := clientFlags{output: *output}
	return cf.print(stdout, out, func(tw *tabwriter.Writer) {
		fmt.Fprintf(tw, "signature OK (kid %s)\n", kid)
		printManifest(tw, out)
	})
}

func manifestPush(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("trust manifest push", "trust manifest push -f manifest.jws\n\nSends a signed manifest to a node, which verifies it with central security's key and commits it to its BU's registry.")
	var cf clientFlags
	cf.register(fs)
	file := fs.String("f", "", "the signed manifest (from `mcpmesh trust manifest sign`)")
	if err := noArgs(fs, args); err != nil {
		return err
	}
	if *file == "" {
		return usagef("want -f manifest.jws, a manifest signed with `mcpmesh trust manifest sign`")
	}
	signed, err := os.ReadFile(*file)
	if err != nil {
		return fmt.Errorf("-f: %w", err)
	}
	c, ctx, cancel, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	out, err := c.PushManifest(ctx, signed)
	if err != nil {
		return err
	}
	return cf.print(stdout, out, func(tw *tabwriter.Writer) {
		if out.Unchanged {
			fmt.Fprintf(tw, "version %d was already in force (pushed by %s at %s)\n", out.Version, out.By, fmtTime(out.At))
			return
		}
		fmt.Fprintf(tw, "version %d committed (index %d); every node of the BU applies it\n", out.Version, out.Index)
	})
}

func manifestShow(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("trust manifest show", "trust manifest show [-o json] [-signed] [-consistent]\n\nShows the BU's federation manifest in force.")
	var cf clientFlags
	cf.register(fs)
	signedOnly := fs.Bool("signed", false, "print only the signed form (to push it to another BU's node)")
	consistent := consistentFlag(fs, "push")
	if err := noArgs(fs, args); err != nil {
		return err
	}
	c, ctx, cancel, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	out, err := c.Manifest(ctx, *consistent)
	if err != nil {
		return err
	}
	if *signedOnly {
		_, err := fmt.Fprintln(stdout, out.Signed)
		return err
	}
	return cf.print(stdout, out, func(tw *tabwriter.Writer) {
		printManifest(tw, out)
		fmt.Fprintf(tw, "pushed by %s at %s (index %d)\n", out.By, fmtTime(out.At), out.Index)
	})
}

// printManifest writes a manifest's version, expiry, domains and
// relationships.
func printManifest(tw *tabwriter.Writer, m api.ManifestResponse) {
	state := "in force"
	if m.Expired || !time.Now().Before(m.Expires) {
		state = "EXPIRED: it authorizes nothing; central security must push a fresh one"
	}
	fmt.Fprintf(tw, "version %d, expires %s (%s)\n\n", m.Version, fmtTime(m.Expires), state)
	fmt.Fprintln(tw, "TRUST DOMAIN\tNAMESPACE\tBUNDLE ENDPOINTS")
	for _, d := range m.TrustDomains {
		eps := make([]string, len(d.BundleEndpoints))
		for i, e := range d.BundleEndpoints {
			eps[i] = e.URL + " (" + e.SPIFFEID + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", d.TrustDomain, d.Namespace, strings.Join(eps, ", "))
	}
	fmt.Fprintln(tw)
	if len(m.Relationships) == 0 {
		fmt.Fprintln(tw, "no relationships: no BU may call another")
		return
	}
	fmt.Fprintln(tw, "CALLER (FROM)\tEXPORTER (TO)")
	for _, r := range m.Relationships {
		fmt.Fprintf(tw, "%s\t%s\n", r.From, r.To)
	}
}
