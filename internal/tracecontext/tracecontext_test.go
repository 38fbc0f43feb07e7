package tracecontext

import (
	"fmt"
	"strings"
	"testing"
)

func TestValid(t *testing.T) {
	const ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{ok, true},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true},
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", false}, // zero trace id
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false}, // zero parent id
		{"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false}, // upper case
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false}, // another version
		{ok + "-x", false},
		{ok[:54], false},
		{"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false},
		{"", false},
	} {
		if got := Valid(tc.in); got != tc.want {
			t.Errorf("Valid(%q) = %v; want %v", tc.in, got, tc.want)
		}
	}
	if got := TraceID(ok); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("TraceID = %q", got)
	}
	if got := TraceID("00-x"); got != "" {
		t.Errorf("TraceID of an invalid traceparent = %q", got)
	}
}

func TestValidState(t *testing.T) {
	many := func(n int) string {
		var ms []string
		for i := range n {
			ms = append(ms, fmt.Sprintf("k%d=v", i))
		}
		return strings.Join(ms, ",")
	}
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"congo=t61rcWkgMzE", true},
		{"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", true},
		{" rojo=00f067aa0ba902b7 ,\tcongo=t61rcWkgMzE , ", true}, // spaces, an empty member
		{"tenant1@vendor=a b", true},
		{"0tenant@vendor=x", true},
		{"k/*_-9=~!\"#$%&'()*+-./:;<>?@[\\]^_`{|}", true},
		{many(32), true},
		{many(33), false}, // more than 32 members
		{"a=" + strings.Repeat("x", 256), true},
		{"a=" + strings.Repeat("x", 257), false},
		{"a=" + strings.Repeat("x", 256) + ",b=" + strings.Repeat("y", 256), false}, // over 512 characters
		{"", false},
		{",", false},
		{"Rojo=1", false},              // upper case key
		{"1abc=1", false},              // simple key starting with a digit
		{"a@Vendor=1", false},          // upper case system id
		{"a@v12345678901234=1", false}, // system id over 14
		{"a=", false},                  // empty value
		{"a=x\ty", false},              // a tab inside a value
		{"a=x=y", false},
		{"a=x\x7f", false},
		{"a", false},
		{"a=1,a=2", false}, // duplicate key
	} {
		if got := ValidState(tc.in); got != tc.want {
			t.Errorf("ValidState(%q) = %v; want %v", tc.in, got, tc.want)
		}
	}
}
