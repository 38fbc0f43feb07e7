package cluster

import (
	"testing"

	"go.uber.org/goleak"
)

// Every replica a test starts must be gone after Shutdown: Raft, the node
// port, RPC streams and pebble's background work included.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
