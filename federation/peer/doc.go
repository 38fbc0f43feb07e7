// Package peer is the transport between BUs' nodes: HTTP/3 over QUIC
// (quic-go) with SPIFFE mutual TLS, and the HTTPS SPIFFE bundle endpoint
// on the same port number over TCP.
//
// Server binds federation.peer.listen on UDP and TCP. On UDP it serves an
// http.Handler over HTTP/3 to clients that present an X509-SVID of an
// mcpmesh node (spiffe://<td>/mcpmesh/node/<id>) verifying against the
// node's current bundle source and accepted by an Authorize hook (the
// manifest's relationships); PeerID gives handlers the caller. On TCP it
// serves the node's own trust domain's bundle (go-spiffe
// federation.NewHandler, https_spiffe profile: the node's SVID, no client
// authentication). Client sends requests to a peer address for an
// expected trust domain over one pooled QUIC connection per address;
// DoFailover tries a BU's addresses in order, moving on after a request
// that may have been delivered only when the caller says it is safe to
// repeat (its doc states the rule), and builds each attempt's request for
// the node its connection's handshake verified.
//
// Security settings, on both sides: TLS 1.3 only, session tickets
// disabled and 0-RTT off, because a resumed session or early data would
// skip the SPIFFE verification and authorization of the peer; ALPN h3.
// The trust domain a caller expects at an address (from gossip, which is
// never authority) is checked against the certificate before any request
// is sent: a node of another trust domain at that address is refused with
// a *HandshakeError naming both. Revalidate (Server and Client) closes
// established connections whose peer no longer passes, after a bundle set
// replacement (revocation, rotation) or a manifest change.
//
// UDP buffers: both sides ask for 7 MiB socket buffers, as quic-go does.
// Where the kernel caps them (net.core.rmem_max / wmem_max, without
// CAP_NET_ADMIN) the node logs one warning per socket, not per
// connection, and QUIC runs with the smaller buffers; quic-go itself also
// prints one line per process through the standard logger (silenced with
// QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING=true).
//
// The package does not decide what a peer may see or call (the handler
// does, from PeerID), which trust domains are trusted (trust/bundles and
// the manifest), or which addresses belong to a BU (gossip).
package peer
