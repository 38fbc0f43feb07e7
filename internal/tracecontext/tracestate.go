package tracecontext

import "strings"

// MaxStateMembers and MaxStateLen bound a tracestate as the W3C Trace
// Context specification does: at most 32 list members, and a header
// value of at most 512 characters.
const (
	MaxStateMembers = 32
	MaxStateLen     = 512
)

// ValidState reports whether ts is a W3C tracestate value a node may pass
// on: at most MaxStateLen characters and MaxStateMembers list members
// (comma separated, optional spaces and tabs around them, empty members
// allowed), each "key=value" with a key of the specification's grammar
// (lower case "vendor" or "tenant@vendor") used once, and a value of 1 to
// 256 printable ASCII characters other than ',' and '=' that does not end
// in a space. "" (no tracestate) is not valid. A node passes a tracestate
// on only with a valid traceparent, unchanged, and drops an invalid one
// whole, as the specification allows.
func ValidState(ts string) bool {
	if ts == "" || len(ts) > MaxStateLen {
		return false
	}
	members := 0
	var keys []string
	for m := range strings.SplitSeq(ts, ",") {
		m = strings.Trim(m, " \t")
		if m == "" {
			continue
		}
		members++
		if members > MaxStateMembers {
			return false
		}
		k, v, ok := strings.Cut(m, "=")
		if !ok || !validKey(k) || !validValue(v) {
			return false
		}
		for _, seen := range keys {
			if seen == k {
				return false
			}
		}
		keys = append(keys, k)
	}
	return members > 0
}

// validKey: simple-key = lcalpha 0*255(lcalpha / DIGIT / "_" / "-"/ "*" /
// "/"); multi-tenant-key = tenant-id "@" system-id, tenant-id = (lcalpha /
// DIGIT) 0*240(...), system-id = lcalpha 0*13(...).
func validKey(k string) bool {
	tenant, system, multi := strings.Cut(k, "@")
	if !multi {
		return len(k) <= 256 && isLower(k[0:min(1, len(k))]) && keyChars(k)
	}
	return len(tenant) >= 1 && len(tenant) <= 241 && (isLower(tenant[:1]) || isDigit(tenant[0])) && keyChars(tenant) &&
		len(system) >= 1 && len(system) <= 14 && isLower(system[:1]) && keyChars(system)
}

func keyChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || isDigit(c) || c == '_' || c == '-' || c == '*' || c == '/') {
			return false
		}
	}
	return true
}

func isLower(s string) bool { return len(s) == 1 && 'a' <= s[0] && s[0] <= 'z' }

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// validValue: value = 0*255(chr) nblk-chr, chr = %x20 / nblk-chr,
// nblk-chr = %x21-2B / %x2D-3C / %x3E-7E.
func validValue(v string) bool {
	if len(v) == 0 || len(v) > 256 || v[len(v)-1] == ' ' {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x20 || c > 0x7e || c == ',' || c == '=' {
			return false
		}
	}
	return true
}
