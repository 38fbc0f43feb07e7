package card

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestValidateVersion(t *testing.T) {
	valid := []string{
		"0.0.0", "1.2.3", "10.20.30", "1.0.0-rc.1", "1.0.0-alpha", "1.0.0-alpha.beta.1",
		"1.0.0-0.3.7", "1.0.0-x.7.z.92", "1.0.0-x-y-z.--", "2.0.0-rc-1", "999999999999999999999.0.0",
	}
	for _, v := range valid {
		if err := ValidateVersion(v); err != nil {
			t.Errorf("ValidateVersion(%q) = %v; want nil", v, err)
		}
	}
	refused := []struct {
		v       string
		wantMsg string
	}{
		{"", "version is required"},
		{"latest", `"latest" is not a version`},
		{"LATEST", "not a version"},
		{"v1.2.3", `drop it and write "1.2.3"`},
		{"V1.2.3", "drop it"},
		{"v1.0.0-rc.1", `write "1.0.0-rc.1"`},
		{"^1.2", "range or wildcard"},
		{"^1.2.3", "range or wildcard"},
		{"~1", "range or wildcard"},
		{"~1.2.3", "range or wildcard"},
		{">=1", "range or wildcard"},
		{">=1.0.0 <2.0.0", "range or wildcard"},
		{"1.x", "range or wildcard"},
		{"1.2.X", "range or wildcard"},
		{"1.*", "range or wildcard"},
		{"*", "range or wildcard"},
		{"1.0.0 || 2.0.0", "range or wildcard"},
		{"1.2", `write "1.2.0"`},
		{"1", `write "1.0.0"`},
		{"1.2-rc.1", "3 numbers"},
		{"01.2.3", "leading zero"},
		{"1.02.3", "leading zero"},
		{"1.2.3-01", "not a semantic version"},
		{"1.2.3+build.7", "build metadata"},
		{"1.2.3-rc.1+build", "build metadata"},
		{"1.2.3.4", "not a semantic version"},
		{"1.2.3-", "not a semantic version"},
		{"1.2.3-rc..1", "not a semantic version"},
		{"1.2.3-rc_1", "not a semantic version"},
		{" 1.2.3", "range or wildcard"},
		{"-1.2.3", "not a semantic version"},
		{"1.2.3\n", "not a semantic version"},
		{"one.two.three", "not a semantic version"},
		{strings.Repeat("1", 256), "more than 255"},
		{"1.0.0-" + strings.Repeat("a", 250), "more than 255"},
	}
	for _, tt := range refused {
		err := ValidateVersion(tt.v)
		if err == nil {
			t.Errorf("ValidateVersion(%q) = nil; want an error", tt.v)
			continue
		}
		if !strings.Contains(err.Error(), tt.wantMsg) {
			t.Errorf("ValidateVersion(%q) = %q; want it to contain %q", tt.v, err, tt.wantMsg)
		}
	}
}

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"1.0.0", "1.0.0", 0},
		{"1.0.0", "2.0.0", -1},
		{"2.0.0", "1.0.0", 1},
		{"1.9.0", "1.10.0", -1},
		{"1.0.10", "1.0.9", 1},
		{"1.0.0-rc.1", "1.0.0", -1},
		{"1.0.0", "1.0.0-rc.1", 1},
		{"1.0.0-alpha", "1.0.0-alpha.1", -1},
		{"1.0.0-alpha.1", "1.0.0-alpha.beta", -1},
		{"1.0.0-beta.2", "1.0.0-beta.11", -1},
		{"1.0.0-rc.1", "1.0.0-rc.1", 0},
		{"99999999999999999999.0.0", "9.0.0", 1},
		{"not-a-version", "0.0.0", -1},
		{"0.0.0", "v1.0.0", 1},
		{"1.2", "1.2.0", -1}, // "1.2" is refused, not shorthand
		{"abc", "abd", -1},
		{"abc", "abc", 0},
	}
	for _, tt := range tests {
		if got := CompareVersions(tt.a, tt.b); got != tt.want {
			t.Errorf("CompareVersions(%q, %q) = %d; want %d", tt.a, tt.b, got, tt.want)
		}
	}
	// Semantic Versioning 2.0.0, section 11: the precedence example.
	want := []string{"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "2.0.0", "2.1.0", "2.1.1"}
	got := slices.Clone(want)
	slices.Reverse(got)
	got = append(got, "latest")
	slices.SortFunc(got, CompareVersions)
	if diff := cmp.Diff(append([]string{"latest"}, want...), got); diff != "" {
		t.Errorf("sorted versions (-want +got):\n%s", diff)
	}
}
