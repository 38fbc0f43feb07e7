package gateway

import (
	"testing"

	"go.uber.org/goleak"
)

// Gateways, their upstream sessions and background checks must be gone
// once a test has closed them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
