package spire_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a Source or a test server leaves a
// goroutine behind (the Workload API watchers, gRPC streams).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
