package apikey

import (
	"strings"
	"testing"
)

func TestNewKeysParseAndMatch(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		k, err := New()
		if err != nil {
			t.Fatal(err)
		}
		if seen[k.ID] {
			t.Fatalf("id %s made twice", k.ID)
		}
		seen[k.ID] = true
		id, err := Parse(k.Secret)
		if err != nil || id != k.ID {
			t.Fatalf("Parse(%q) = %q, %v; want %q", k.Secret, id, err, k.ID)
		}
		if !ValidHash(k.Hash) || !Matches(k.Secret, k.Hash) {
			t.Fatalf("key %s does not match its own hash", k.ID)
		}
		if strings.Contains(k.Hash, k.Secret[len(Prefix)+idLen+1:]) {
			t.Fatal("the hash contains the secret")
		}
	}
}

func TestMatchesRefusesOtherKeys(t *testing.T) {
	a, _ := New()
	b, _ := New()
	if Matches(b.Secret, a.Hash) {
		t.Fatal("another key matched")
	}
	// Same id, different secret: what someone who saw `apikey list` could try.
	forged := a.Secret[:len(a.Secret)-1] + map[bool]string{true: "B", false: "A"}[strings.HasSuffix(a.Secret, "A")]
	if Matches(forged, a.Hash) {
		t.Fatal("a key with the right id and a changed secret matched")
	}
	if Matches(a.Secret, "zz") || Matches(a.Secret, "") {
		t.Fatal("a malformed hash matched")
	}
}

func TestParseRefusesMalformedKeys(t *testing.T) {
	k, _ := New()
	for name, key := range map[string]string{
		"empty":        "",
		"no prefix":    strings.TrimPrefix(k.Secret, Prefix),
		"jwt":          "eyJhbGciOiJFUzI1NiJ9.e30.sig",
		"short":        k.Secret[:len(k.Secret)-1],
		"long":         k.Secret + "a",
		"bad id":       Prefix + "ABCDEFGHIJKL" + k.Secret[len(Prefix)+idLen:],
		"no separator": Prefix + k.ID + "-" + k.Secret[len(Prefix)+idLen+1:],
		"bad secret":   Prefix + k.ID + "_" + strings.Repeat("*", secretLen),
	} {
		if id, err := Parse(key); err == nil {
			t.Errorf("%s: Parse(%q) = %q, want an error", name, key, id)
		}
	}
}

func FuzzParse(f *testing.F) {
	k, _ := New()
	f.Add(k.Secret)
	f.Add("mcpk_")
	f.Add("Bearer x")
	f.Fuzz(func(t *testing.T, key string) {
		id, err := Parse(key)
		if err != nil {
			return
		}
		if !ValidID(id) || !strings.HasPrefix(key, Prefix+id+"_") {
			t.Fatalf("Parse(%q) accepted id %q", key, id)
		}
	})
}
