package config

import (
	"strings"
	"testing"
)

const federationYAML = `
federation:
  mesh: corp
  manifest_key_file: /etc/mcpmesh/central.pub
  peer:
    listen: 0.0.0.0:7301
    advertise: 10.0.0.1:7301
  gossip:
    listen: 10.0.0.1:7401
    join: [10.0.0.2:7401]
    keyring_file: /etc/mcpmesh/gossip.keys
`

func TestFederation(t *testing.T) {
	cfg, err := Parse(strings.NewReader(validYAML + federationYAML))
	if err != nil {
		t.Fatal(err)
	}
	f := cfg.Federation
	if !f.Enabled() || f.PeerAdvertise() != "10.0.0.1:7301" || f.GossipAdvertise() != "10.0.0.1:7401" || f.Mesh != "corp" {
		t.Fatalf("federation = %+v", f)
	}
	if f.AssertionTTL != DefaultAssertionTTL || f.SyncInterval != DefaultFederationSyncInterval {
		t.Fatalf("defaults not kept: %+v", f)
	}
	off, err := Parse(strings.NewReader(validYAML))
	if err != nil || off.Federation.Enabled() {
		t.Fatalf("federation on without a peer listener (err %v)", err)
	}
	for _, tc := range []struct{ yaml, want string }{
		{strings.Replace(federationYAML, "mesh: corp", "mesh: Corp_Mesh", 1), "federation.mesh:"},
		{strings.Replace(federationYAML, "    advertise: 10.0.0.1:7301\n", "", 1), "federation.peer.advertise:"},
		{strings.Replace(federationYAML, "  manifest_key_file: /etc/mcpmesh/central.pub\n", "", 1), "federation.manifest_key_file: missing"},
		{strings.Replace(federationYAML, "    keyring_file: /etc/mcpmesh/gossip.keys\n", "", 1), "federation.gossip.keyring_file: missing"},
		{strings.Replace(federationYAML, "join: [10.0.0.2:7401]", "join: [nohost]", 1), "federation.gossip.join[0]:"},
		{strings.Replace(federationYAML, "    listen: 10.0.0.1:7401\n", "", 1), "federation.gossip.listen: missing"},
		{federationYAML + "  assertion_ttl: 5m\n", "federation.assertion_ttl:"},
		{"\nfederation:\n  gossip:\n    join: [10.0.0.2:7401]\n", "federation.peer.listen is empty"},
	} {
		_, err := Parse(strings.NewReader(validYAML + tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want it to contain %q\nYAML:%s", err, tc.want, tc.yaml)
		}
	}
}
