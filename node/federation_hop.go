package node

import "time"

// CallTimeout implements upstream.Federation: federation.call_timeout
// bounds a call to another BU, all attempts included, and what is left of
// it travels with the call (upstream.TimeoutHeader) so that the exporting
// BU stops when this one stops waiting.
func (f *federation) CallTimeout() time.Duration { return f.n.cfg.Federation.CallTimeout }
