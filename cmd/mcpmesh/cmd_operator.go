package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/mcpmesh/mcpmesh/registry/api"
)

func runMembers(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("members", "members [-wan]")
	var cf clientFlags
	cf.register(fs)
	wan := fs.Bool("wan", false, "list the mesh of all BUs as the node's gossip pool sees it, instead of its BU's Raft members")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	c, ctx, cancel, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if *wan {
		m, err := c.MeshMembers(ctx)
		if err != nil {
			return err
		}
		return printMesh(&cf, stdout, m)
	}
	m, err := c.Members(ctx)
	if err != nil {
		return err
	}
	return printMembers(&cf, stdout, m)
}

func printMembers(cf *clientFlags, stdout io.Writer, m api.MembersResponse) error {
	return cf.print(stdout, m, func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "ID\tADDRESS\tAPI\tSUFFRAGE\tROLE\tLAST CONTACT\tAPPLIED")
		for _, s := range m.Members {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", s.ID, s.Address, orDash(s.APIURL), s.Suffrage, s.Role, fmtTime(s.LastContact), s.AppliedIndex)
		}
	})
}

// printMesh prints the gossip pool's members. CHECK is what the answering
// node verified of another BU's member: "verified" (its peer listener is a
// node of the trust domain it claims), the refusal, why it is not checked
// yet, or "-" (its own BU, or no relationship).
func printMesh(cf *clientFlags, stdout io.Writer, m api.MeshResponse) error {
	return cf.print(stdout, m, func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "NAME\tSTATE\tTRUST DOMAIN\tPEER ADDRESS\tGOSSIP ADDRESS\tMANIFEST\tCATALOG\tBUNDLE SEQ\tCHECK")
		for _, s := range m.Members {
			name := s.Name
			if s.Local {
				name += " (this node)"
			}
			check := "-"
			switch {
			case s.HintError != "":
				check = "bad hint: " + s.HintError
			case s.Verified:
				check = "verified"
			case s.Refused != "":
				check = "refused: " + s.Refused
			case s.Pending != "":
				check = "not checked yet: " + s.Pending
			}
			catalog := "-"
			if s.CatalogVersion > 0 {
				catalog = fmt.Sprintf("%d/%s", s.CatalogVersion, s.CatalogHash)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%d\t%s\n", name, s.State, orDash(s.TrustDomain), orDash(s.PeerAddr), s.Addr, s.ManifestVersion, catalog, s.BundleSequence, check)
		}
	})
}

func runOperator(ctx context.Context, args []string, stdout io.Writer) error {
	return dispatch(ctx, "operator", args, stdout, []subcommand{
		{"snapshot", func(ctx context.Context, args []string, stdout io.Writer) error {
			return dispatch(ctx, "operator snapshot", args, stdout, []subcommand{{"save", snapshotSave}, {"restore", snapshotRestore}})
		}},
		{"join", operatorJoin}, {"remove", operatorRemove},
	})
}

func snapshotSave(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("operator snapshot save", "operator snapshot save -f FILE")
	var cf clientFlags
	cf.register(fs)
	file := fs.String("f", "", "file to write the snapshot to")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *file == "" {
		return usagef("want -f FILE")
	}
	c, ctx, cancel, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	// Write beside the target and rename, so a failed save never leaves a
	// truncated file under the requested name.
	tmp, err := os.CreateTemp(filepath.Dir(*file), ".snapshot-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := c.SaveSnapshot(ctx, tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	st, _ := tmp.Stat()
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), *file); err != nil {
		return err
	}
	return cf.print(stdout, map[string]any{"file": *file, "bytes": st.Size()}, func(tw *tabwriter.Writer) {
		fmt.Fprintf(tw, "saved snapshot to %s (%d bytes)\n", *file, st.Size())
	})
}

func snapshotRestore(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("operator snapshot restore", "operator snapshot restore -f FILE")
	var cf clientFlags
	cf.register(fs)
	file := fs.String("f", "", "snapshot file made by `operator snapshot save`")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *file == "" {
		return usagef("want -f FILE")
	}
	f, err := os.Open(*file)
	if err != nil {
		return err
	}
	defer f.Close()
	c, ctx, cancel, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if err := c.RestoreSnapshot(ctx, f); err != nil {
		return err
	}
	return cf.print(stdout, map[string]any{"restored": *file}, func(tw *tabwriter.Writer) {
		fmt.Fprintf(tw, "restored the namespace from %s\n", *file)
	})
}

func operatorJoin(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("operator join", "operator join -id NODE -address HOST:PORT")
	var cf clientFlags
	cf.register(fs)
	id := fs.String("id", "", "node id of the new voter")
	addr := fs.String("address", "", "its Raft address")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *id == "" || *addr == "" {
		return usagef("want -id NODE and -address HOST:PORT")
	}
	c, ctx, cancel, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	m, err := c.AddMember(ctx, *id, *addr)
	if err != nil {
		return err
	}
	return printMembers(&cf, stdout, m)
}

func operatorRemove(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("operator remove", "operator remove -id NODE")
	var cf clientFlags
	cf.register(fs)
	id := fs.String("id", "", "node id to remove from the cluster")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *id == "" {
		return usagef("want -id NODE")
	}
	c, ctx, cancel, err := cf.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	m, err := c.RemoveMember(ctx, *id)
	if err != nil {
		return err
	}
	return printMembers(&cf, stdout, m)
}
