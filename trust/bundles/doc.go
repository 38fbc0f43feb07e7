// Package bundles owns the set of SPIFFE trust bundles a node trusts and
// keeps the foreign ones current.
//
//   - Set is every trust domain the node trusts right now, its own and
//     the foreign ones its BU's Raft state holds, as one
//     spiffebundle.Set behind an atomic pointer. It is the bundle source
//     of every TLS configuration and token verifier that accepts other
//     BUs (x509bundle.Source, jwtbundle.Source, spiffebundle.Source).
//     Replace swaps the whole set: bundles are never merged, and a trust
//     domain left out of a new set is no longer trusted (revocation).
//   - OwnBundle builds the node's own trust domain's bundle from the
//     embedded CA, with a sequence number every replica of the BU derives
//     identically (see OwnBundle); FromX509Authorities builds it from
//     the X.509 authorities SPIRE's Workload API hands out, when the
//     node's identity comes from there.
//   - Watcher runs on the BU's leader: it fetches the foreign bundles the
//     manifest's relationships need from their SPIFFE bundle endpoints
//     (https_spiffe profile) and proposes a registry PutBundle command
//     when a bundle's sequence rises, a DeleteBundle when a trust domain
//     leaves its targets.
//
// It does not serve the bundle endpoint (federation/peer does, on the
// peer port over TCP), store bundles (registry/state, key prefix 'g'),
// decide which trust domains are needed (the federation manifest), or
// build TLS configurations (trust/mtls, federation/peer).
package bundles
