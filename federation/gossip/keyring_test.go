package gossip

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseKeyring(t *testing.T) {
	k16 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 16))
	k32 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 32))
	keys, err := ParseKeyring([]byte("# primary first\n\n  " + k32 + "  \n# old key\n" + k16 + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || len(keys[0]) != 32 || len(keys[1]) != 16 {
		t.Fatalf("keys = %x; want the 32-byte key first, then the 16-byte one", keys)
	}
	for name, tc := range map[string]struct{ in, want string }{
		"empty":         {"", "no keys"},
		"comments only": {"# nothing\n\n", "no keys"},
		"not base64":    {k32 + "\nnot base64!\n", "line 2: not a base64 key"},
		"wrong size":    {"\n" + base64.StdEncoding.EncodeToString(make([]byte, 20)), "line 2: key of 20 bytes"},
		"duplicate":     {k16 + "\n" + k16, "line 2: the same key is listed twice"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseKeyring([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseKeyring = %v; want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestLoadKeyringNamesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gossip.keys")
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := LoadKeyring(path)
	if err != nil || len(keys) != 1 || len(keys[0]) != KeySize {
		t.Fatalf("LoadKeyring = %x, %v; want one %d-byte key", keys, err, KeySize)
	}
	if err := os.WriteFile(path, []byte("junk\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyring(path); err == nil || !strings.Contains(err.Error(), path+": line 1") {
		t.Fatalf("LoadKeyring(junk) = %v; want an error naming the file and line", err)
	}
}

func FuzzParseKeyring(f *testing.F) {
	f.Add([]byte("# c\n" + base64.StdEncoding.EncodeToString(make([]byte, 32)) + "\n"))
	f.Add([]byte("\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := ParseKeyring(b)
		if err != nil {
			return
		}
		for _, k := range keys {
			if n := len(k); n != 16 && n != 24 && n != 32 {
				t.Fatalf("accepted a %d-byte key", n)
			}
		}
	})
}
