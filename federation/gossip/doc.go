// Package gossip is the discovery plane of the mesh: one memberlist pool
// across the nodes of all BUs, in which every node advertises a small Hint
// (namespace, trust domain, node id, peer address, peer protocols, catalog
// version and short hash, bundle sequence, manifest version) as its
// memberlist NodeMeta.
//
// # What it owns and what it does not
//
// A Pool owns membership (who is in the mesh), liveness (alive, dead, left)
// and hints: it advertises this node's hint (SetHint), decodes the others'
// (Members), and reports each change of another member to a callback
// (WithOnChange). It does not pull anything and decides nothing: gossip is
// discovery, never authority. memberlist relays messages, so their sender
// cannot be bound to a certificate. A hint only tells the caller that a pull
// is worth making and where: the caller pulls the catalog, manifest or
// bundle over SPIFFE mTLS from Hint.PeerAddr and checks that the peer
// certificate's trust domain equals Hint.TrustDomain (and that the manifest
// maps Hint.Namespace to it) before believing anything. Forged gossip can at
// most cause extra pulls. Nor does the pool decide failover: memberlist
// declares a node dead only after tens of seconds, so callers route around
// failures on peer errors and timeouts.
//
// # Wiring
//
//	keys, err := gossip.LoadKeyring(fed.Gossip.KeyringFile)
//	pool, err := gossip.New(gossip.Config{
//		Bind:      fed.Gossip.Listen,
//		Advertise: fed.GossipAdvertise(),
//		Join:      fed.Gossip.Join,
//		Keyring:   keys,
//		Label:     fed.Mesh,
//		Hint: gossip.Hint{Namespace: ns, TrustDomain: td, NodeID: id,
//			PeerAddr: fed.PeerAdvertise(), Protocols: []string{gossip.PeerProtocol}},
//	}, gossip.WithLogger(l), gossip.WithMetrics(reg), gossip.WithOnChange(onMember))
//	go pool.Run(ctx) // joins, keeps retrying; leaves and shuts down when ctx ends
//	pool.SetHint(func(h *gossip.Hint) { h.CatalogVersion = v; h.CatalogHash = short })
//	pool.Members() // for `mcpmesh members -wan`
//
// # memberlist configuration
//
// The pool uses memberlist.DefaultWANConfig unchanged: probes every 5s with
// a 3s timeout, gossip every 500ms to 4 members, push/pull every 60s
// (memberlist scales it up past 32 members: 2x at 33–64, 3x at 65–128),
// suspicion 6 × log10(N+1) probe intervals. BUs talk across data centres,
// and nothing the pool carries is urgent enough to trade bandwidth for: a
// hint change reaches a 50-node pool in about a second by broadcast (see
// TestSpread50 and BenchmarkSpread), and a node that missed the broadcast
// gets it with its next push/pull. Encryption is always on (New refuses an
// empty keyring; GossipVerifyIncoming and GossipVerifyOutgoing are set), and
// Config.Label (the mesh name, federation.mesh) prefixes every packet and
// stream and is authenticated data of its encryption: pools with different
// labels, or with keys that share nothing, never merge.
//
// # Versions in push/pull
//
// A node that missed a broadcast (UDP loss; DESIGN measured 0.2–3 % of runs
// missing a node) must still converge. memberlist's push/pull (every 60s,
// over TCP, with a random member) exchanges the full state of every member,
// and each member's state includes its NodeMeta with its incarnation: a
// node that missed an alive broadcast takes the newer meta from push/pull
// and fires the same update event. Every version this package carries lives
// in the owning node's hint, so push/pull already carries all of them; the
// delegate therefore adds no LocalState/MergeRemoteState table of
// highest-seen versions (it would duplicate the metas, and would be a
// second, unauthenticated copy of claims whose owner is the only source).
// TestLostBroadcastRepairedByPushPull shows the repair: a node that drops
// every UDP packet learns a new catalog version only once it can push/pull
// over TCP.
//
// # Keyring rotation
//
// The keyring file (LoadKeyring) lists base64 keys, primary first; every
// key decrypts, only the primary encrypts. Every node of every BU holds the
// same file. To rotate without a partition, restarting (or reloading) the
// nodes after each step:
//
//  1. add the new key as the second line everywhere (all nodes can now
//     read it);
//  2. move it to the first line everywhere (nodes now send with it; nodes
//     not yet moved still read it);
//  3. remove the old key everywhere.
//
// Make a key with `mcpmesh trust gossip-key`.
//
// # Metrics
//
// WithMetrics registers mcpmesh_gossip_members{state},
// mcpmesh_gossip_hint_updates_total and
// mcpmesh_gossip_hint_decode_errors_total. memberlist v0.7 reports its own
// metrics through hashicorp/go-metrics directly (no build tag needed) to
// the global sink the mcpmesh binary installs for raft, so they reach the
// node's /metrics as mcpmesh_memberlist_* (mcpmesh_memberlist_gossip,
// _msg_alive, _pushPullNode, _udp_sent, _tcp_connect, ...).
package gossip
