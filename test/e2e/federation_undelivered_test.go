package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mcpmesh/mcpmesh/node/gateway"
	"github.com/mcpmesh/mcpmesh/test/internal/testcluster"
)

// TestForwardedCallUndeliveredRetryLater: with finance's only node gone,
// a call of a tool that is not safe to repeat reaches no finance node,
// and the agent is told so and to retry later, not that the call may have
// run: the error hr's federation transport marks undelivered reaches the
// gateway through go-sdk's client. (The first call after the kill, sent
// on hr's connection to the dead node, is in doubt, and the pool's
// breaker then fails calls fast for a while: the test waits for a call
// that tries to connect.)
func TestForwardedCallUndeliveredRetryLater(t *testing.T) {
	t.Parallel()
	up := startHeldUpstream(t)
	up.release()
	m := startMeshWith(t, meshOptions{})
	card := []byte(fmt.Sprintf(`{"name":%q,"description":"Payments","version":"1.0.0","_meta":{
"io.mcpmesh/governance":{"owner":"o@corp.example","team":"t","dataClassification":"internal","riskTier":"low","costPerCall":0,
"upstream":{"transport":"streamable-http","url":%q}},
"io.mcpmesh/tools":[%s]}}`, paymentsServer, up.URL, paymentsTools))
	key := m.export(t, paymentsServer, "transfer", card)
	m.push(t, "hr>finance")
	hr := m.hr.Nodes[0]
	waitListed(t, m.hr, hr, key, "finance.transfer", 60*time.Second)
	if _, err := callTool(t, hr, key, "finance.transfer", "before", 30*time.Second); err != nil {
		t.Fatalf("finance.transfer with finance up: %v\nhr log:\n%s", err, hr.LogTail(30))
	}
	m.fin.Nodes[0].Kill()
	start := time.Now()
	var last error
	if !testcluster.Eventually(45*time.Second, func() bool {
		_, last = callTool(t, hr, key, "finance.transfer", "after", 30*time.Second)
		return last != nil && strings.Contains(last.Error(), "reached no node of the exporting BU")
	}) {
		t.Fatalf("finance.transfer with finance's node gone: last %v; want -32018 saying it reached no node of finance within 45s\nhr log:\n%s", last, hr.LogTail(30))
	}
	msg := last.Error()
	if rpcCode(last) != gateway.CodeRemoteUnavailable || !strings.Contains(msg, "retry later") || strings.Contains(msg, "may have run") {
		t.Errorf("finance.transfer with finance's node gone: %v; want -32018 saying to retry later, and not that it may have run", last)
	}
	if runs := up.runsOf(""); len(runs) != 0 {
		t.Errorf("the upstream saw calls without a request id: %+v", runs)
	}
	t.Logf("%v after the kill, the agent got: %v", time.Since(start).Round(time.Millisecond), last)
}
