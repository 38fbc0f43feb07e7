package card

import (
	"encoding/json"
	"errors"
	"testing"
)

func FuzzParse(f *testing.F) {
	f.Add(readLedger(f))
	f.Add([]byte(`{"name":"corp.hr/directory","description":"d","version":"0.1.0","_meta":{"io.mcpmesh/governance":{"owner":"o","team":"t","dataClassification":"public","riskTier":"low","upstream":{"transport":"stdio","command":"hr","env":{"A":"b"}}},"io.mcpmesh/tools":[{"name":"find","inputSchema":{"type":"object"}}]}}`))
	f.Add([]byte(`{"name":"a/b","description":"d","version":"1.0.0-rc.1","packages":[{"registryType":"npm","identifier":"x","transport":{"type":"stdio"},"packageArguments":[{"type":"positional","value":""}]}],"_meta":{"io.mcpmesh/governance":{"owner":"o","team":"t","dataClassification":"public","riskTier":"low","upstream":{"transport":"sse","url":"https://x/sse"}},"x/y":{"<":"\u2028"}}}`))
	f.Add([]byte(`{"name":5}`))
	f.Add([]byte(`{"a":1,"a":2}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) == 0 {
				t.Fatalf("Parse error %v (%T) is not a *ValidationError with problems", err, err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("parsed card does not validate: %v", err)
		}
		if _, err := c.Governance(); err != nil {
			t.Fatalf("parsed card has no valid governance: %v", err)
		}
		tvs, err := c.ToolVersions()
		if err != nil {
			t.Fatalf("parsed card has no tool versions: %v", err)
		}
		out, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("marshal parsed card: %v", err)
		}
		c2, err := Parse(out)
		if err != nil {
			t.Fatalf("card does not re-parse after a JSON round trip: %v\nin:  %q\nout: %q", err, data, out)
		}
		tvs2, err := c2.ToolVersions()
		if err != nil || len(tvs2) != len(tvs) {
			t.Fatalf("tool versions after round trip: %d, %v; want %d", len(tvs2), err, len(tvs))
		}
		for i := range tvs {
			if tvs[i].Hash != tvs2[i].Hash {
				t.Fatalf("tool %q hash changed over a JSON round trip", tvs[i].Name)
			}
		}
	})
}
