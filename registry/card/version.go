package card

import (
	"fmt"
	"regexp"
	"strings"

	"golang.org/x/mod/semver"
)

// maxVersionLen is server.json's maxLength for "version".
const maxVersionLen = 255

// exactVersion is the Semantic Versioning 2.0.0 grammar (semver.org's
// suggested expression) without build metadata, which this package refuses.
var exactVersion = regexp.MustCompile(`^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)` +
	`(?:-((?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*))*))?$`)

// ValidateVersion reports whether v is one exact Semantic Versioning 2.0.0
// version: MAJOR.MINOR.PATCH with an optional prerelease, such as "1.2.3" or
// "1.2.3-rc.1". It refuses the empty string, "latest", ranges ("^1.2", "~1",
// ">=1", "1.x", "1.*"), partial versions ("1.2"), leading zeros, a leading
// "v" and build metadata ("1.2.3+build.7", which would have the same
// precedence as "1.2.3"). The error says how to fix the value.
func ValidateVersion(v string) error {
	if isExact(v) {
		return nil
	}
	const want = "give one exact semantic version MAJOR.MINOR.PATCH[-PRERELEASE], such as 1.0.0 or 2.1.0-rc.1"
	switch {
	case v == "":
		return fmt.Errorf("version is required: %s", want)
	case len(v) > maxVersionLen:
		return fmt.Errorf("version is %d bytes long, more than %d: %s", len(v), maxVersionLen, want)
	case strings.EqualFold(v, "latest"):
		return fmt.Errorf("%q is not a version: %s", v, want)
	case (v[0] == 'v' || v[0] == 'V') && exactVersion.MatchString(v[1:]):
		return fmt.Errorf("version %q has a leading %q: drop it and write %q", v, v[:1], v[1:])
	}
	if core, build, ok := strings.Cut(v, "+"); ok && exactVersion.MatchString(core) {
		return fmt.Errorf("version %q has build metadata %q, which semver ignores when ordering versions, so a pin could not tell it apart from %q: drop it, or make it a prerelease such as %q",
			v, "+"+build, core, core+"-"+strings.ReplaceAll(build, "+", "."))
	}
	if isRange(v) {
		return fmt.Errorf("version %q is a range or wildcard, not a version: %s", v, want)
	}
	core, _, _ := strings.Cut(v, "-")
	parts := strings.Split(core, ".")
	if len(parts) < 3 && allDigits(parts) {
		return fmt.Errorf("version %q has %d of the 3 numbers MAJOR.MINOR.PATCH: write %q", v, len(parts), core+strings.Repeat(".0", 3-len(parts)))
	}
	if len(parts) == 3 && allDigits(parts) {
		for _, p := range parts {
			if len(p) > 1 && p[0] == '0' {
				return fmt.Errorf("version %q has a leading zero in %q: numbers must not start with 0, %s", v, p, want)
			}
		}
	}
	return fmt.Errorf("version %q is not a semantic version: %s", v, want)
}

// versionMessage is ValidateVersion's message for use under a field that
// already names the version: `"^1.2" is a range…` rather than
// `version "^1.2" is a range…`.
func versionMessage(err error) string {
	return strings.TrimPrefix(err.Error(), "version ")
}

// isExact reports whether ValidateVersion accepts v.
func isExact(v string) bool {
	return len(v) <= maxVersionLen && exactVersion.MatchString(v)
}

// isRange reports whether v looks like an npm or Cargo style version range or
// wildcard.
func isRange(v string) bool {
	if strings.ContainsAny(v, "^~<>=*| ") {
		return true
	}
	core, _, _ := strings.Cut(v, "-")
	for _, p := range strings.Split(core, ".") {
		if p == "x" || p == "X" {
			return true
		}
	}
	return false
}

func allDigits(parts []string) bool {
	for _, p := range parts {
		if p == "" {
			return false
		}
		for _, c := range p {
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	return true
}

// CompareVersions returns -1, 0 or +1 as a has lower, equal or higher
// semver precedence than b: numbers compare numerically, and a prerelease
// sorts before its release ("1.0.0-rc.1" < "1.0.0"). So that sorting never
// fails, a string that ValidateVersion refuses sorts before every valid
// version, and two refused strings compare as strings.
func CompareVersions(a, b string) int {
	aok, bok := isExact(a), isExact(b)
	switch {
	case aok && bok:
		return semver.Compare("v"+a, "v"+b)
	case aok:
		return 1
	case bok:
		return -1
	default:
		return strings.Compare(a, b)
	}
}
