// Package tracecontext checks W3C trace context (traceparent) values, for
// every part of a node that reads one from outside: the gateway's audit
// records, the pool's upstream requests and the federation assertion's
// Trace claim. It creates no spans.
package tracecontext

import "strings"

// Valid reports whether tp is a W3C traceparent of version 00 as its
// specification defines it: "00-<32 lower hex trace id>-<16 lower hex
// parent id>-<2 lower hex flags>", neither id all zeros.
func Valid(tp string) bool {
	if len(tp) != 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-' || tp[:2] != "00" {
		return false
	}
	for i := 0; i < len(tp); i++ {
		if i == 2 || i == 35 || i == 52 {
			continue
		}
		if c := tp[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return tp[3:35] != strings.Repeat("0", 32) && tp[36:52] != strings.Repeat("0", 16)
}

// TraceID returns the trace id of a valid traceparent, else "".
func TraceID(tp string) string {
	if !Valid(tp) {
		return ""
	}
	return tp[3:35]
}
