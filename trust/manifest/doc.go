// Package manifest owns central security's federation manifest: its
// format, its validation, its signature, and the node's view of the one
// in force.
//
// The manifest lists the mesh's trust domains (one per BU: its
// namespace, the SPIFFE bundle endpoints of its nodes and a bootstrap
// bundle) and the directed relationships between them: {from: hr, to:
// finance} lets agents of hr call the tools finance exports to them. It
// carries a monotonic version (a node never goes back to a lower one) and
// an expiry.
//
// Central security writes it as YAML ([Parse]: strict, unknown keys are
// errors, every error names its field path), signs it with its key
// ([Sign]: a compact JWS, ES256 for an ECDSA P-256 key or EdDSA for an
// Ed25519 key, whose payload is the manifest's canonical JSON and whose
// kid is the RFC 7638 thumbprint of the public key), and pushes the
// signed form to any node. Every node is configured with the public key
// (federation.manifest_key_file, [LoadPublicKeyFile]) and checks a pushed
// manifest with [Verify]: the algorithm must match the key type (so "none"
// and HMAC algorithms are never accepted), the signature must hold, the
// content must validate, and the manifest must not have expired.
//
// # Expiry
//
// A manifest that expired after it was applied is still the namespace's
// manifest: [Open] checks signature and content but not the expiry, so
// the node can load it from its registry state, show it and report it as
// expired ([Manifest.Expired]). It authorizes nothing, though: the node's
// [Holder.Current] returns nil once the held manifest has expired, so
// federation fails closed until central security pushes a fresh one.
//
// # What this package does not do
//
// It does not store the manifest (registry/state keeps the signed bytes
// in the BU's Raft state, command PutManifest), serve it (registry/api,
// PUT and GET /v1/federation/manifest), gossip its version, or fetch the
// bundles it names (federation/...). It never reads a clock of its own:
// callers pass now.
package manifest
