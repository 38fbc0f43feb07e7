package mtls

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

// NodePathPrefix is the path under which node SPIFFE IDs live:
// spiffe://<trust domain>/mcpmesh/node/<id>.
const NodePathPrefix = "/mcpmesh/node/"

// NodeAuthorizer returns an authorizer that accepts only mcpmesh nodes of td:
// peers whose SPIFFE ID is in td and whose path is under /mcpmesh/node/. It
// logs each refusal at warn on logger (nil discards), with the ID the peer
// presented, or "no SPIFFE ID", and the reason. The authorizer only sees
// peers whose chain verified against the bundle; the configurations of this
// package return the errors of peers that fail before it, naming their ID.
func NodeAuthorizer(td spiffeid.TrustDomain, logger *slog.Logger) tlsconfig.Authorizer {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return func(id spiffeid.ID, _ [][]*x509.Certificate) error {
		var reason string
		switch {
		case id.IsZero():
			reason = "no SPIFFE ID"
		case !id.MemberOf(td):
			reason = fmt.Sprintf("trust domain %q is not %q", id.TrustDomain().Name(), td.Name())
		case !isNodePath(id.Path()):
			reason = fmt.Sprintf("path %q is not under %s", id.Path(), NodePathPrefix)
		default:
			return nil
		}
		peer := noID
		if !id.IsZero() {
			peer = id.String()
		}
		logger.Warn("refused TLS peer: not a node of this trust domain", "peer_id", peer, "reason", reason)
		return errors.New("not a node of " + td.Name() + ": " + reason)
	}
}

func isNodePath(path string) bool {
	return strings.HasPrefix(path, NodePathPrefix) && len(path) > len(NodePathPrefix)
}
