package main

import (
	"fmt"
	"io"

	"github.com/mcpmesh/mcpmesh/federation/gossip"
)

// trustGossipKey prints a new gossip encryption key for a keyring file
// (federation.gossip.keyring_file).
func trustGossipKey(args []string, stdout io.Writer) error {
	fs := newFlagSet("trust gossip-key", "trust gossip-key")
	rest, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("trust gossip-key takes no arguments")
	}
	key, err := gossip.NewKey()
	if err != nil {
		return err
	}
	// Only the key on stdout, so `mcpmesh trust gossip-key >> keys` works;
	// every node of every BU needs the same keyring file.
	_, err = fmt.Fprintln(stdout, key)
	return err
}
