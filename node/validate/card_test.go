package validate

import (
	"errors"
	"strings"
	"testing"

	"github.com/mcpmesh/mcpmesh/registry/card"
)

func TestCheckCard(t *testing.T) {
	cardWith := func(tools string) *card.Card {
		t.Helper()
		c, err := card.Parse([]byte(`{"name":"corp.hr/x","description":"d","version":"1.0.0","_meta":{
"io.mcpmesh/governance":{"owner":"o","team":"t","dataClassification":"internal","riskTier":"low","costPerCall":0,
"upstream":{"transport":"streamable-http","url":"http://127.0.0.1:1/mcp"}},
"io.mcpmesh/tools":[` + tools + `]}}`))
		if err != nil {
			t.Fatalf("test card: %v", err)
		}
		return c
	}
	good := `{"name":"a","inputSchema":{"type":"object","properties":{"q":{"type":"string"}}}}`
	if err := CheckCard(cardWith(good)); err != nil {
		t.Errorf("valid schemas refused: %v", err)
	}
	bad := good + `,{"name":"b","inputSchema":{"type":"object","properties":{"a":{"type":"nope"}}},"outputSchema":{"type":"object","required":"x"}}`
	err := CheckCard(cardWith(bad))
	var ve *card.ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 2 {
		t.Fatalf("CheckCard = %v, want two problems", err)
	}
	if ve.Problems[0].Field != "_meta.io.mcpmesh/tools[1].inputSchema" || ve.Problems[1].Field != "_meta.io.mcpmesh/tools[1].outputSchema" {
		t.Errorf("fields = %q, %q", ve.Problems[0].Field, ve.Problems[1].Field)
	}
	if !strings.Contains(ve.Problems[0].Message, "/properties/a/type") {
		t.Errorf("message does not locate the fault: %s", ve.Problems[0].Message)
	}
}
