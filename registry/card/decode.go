package card

import (
	"bytes"
	"encoding/json"
	"errors"
	"sort"
	"strings"
)

// objectField binds one exact, case-sensitive JSON key to a destination.
type objectField struct {
	key  string
	dst  any    // pointer handed to json.Unmarshal
	want string // what the value must be, for messages: "a string"
}

// decodeObject decodes raw, which must be a JSON object, into fields and
// reports what is wrong with it under path. Keys match exactly, unlike
// encoding/json's case-insensitive matching, so a card means one thing to
// every reader. A key that differs from a known key only in case is always a
// problem; any other unknown key is a problem only when strict is set. A JSON
// null leaves its destination untouched, as encoding/json does.
func decodeObject(raw json.RawMessage, path string, fields []objectField, strict bool) problems {
	var ps problems
	if kind := jsonKind(raw); kind != "object" {
		ps.add(path, "must be a JSON object, got %s", article(kind))
		return ps
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		ps.add(path, "is not valid JSON: %v", err)
		return ps
	}
	keys := make([]string, 0, len(members))
	for k := range members {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	byKey := make(map[string]objectField, len(fields))
	for _, f := range fields {
		byKey[f.key] = f
	}
	for _, k := range keys {
		v := members[k]
		f, ok := byKey[k]
		if !ok {
			if known := caseVariant(k, fields); known != "" {
				ps.add(join(path, k), "unknown field: did you mean %q? Field names are case-sensitive", known)
			} else if strict {
				ps.add(join(path, k), "unknown field: remove it or fix its spelling; known fields are %s", knownKeys(fields))
			}
			continue
		}
		if err := json.Unmarshal(v, f.dst); err != nil {
			got := jsonKind(v)
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) && te.Value != got && !(te.Value == "bool" && got == "boolean") {
				// An element of an array or a value of a map had the wrong type.
				inner := te.Value
				if inner == "bool" {
					inner = "boolean"
				}
				ps.add(join(path, k), "must be %s; it contains %s", f.want, article(inner))
			} else {
				ps.add(join(path, k), "must be %s, got %s", f.want, article(got))
			}
		}
	}
	return ps
}

// caseVariant returns the known key that k differs from only in case, or "".
func caseVariant(k string, fields []objectField) string {
	for _, f := range fields {
		if strings.EqualFold(k, f.key) && k != f.key {
			return f.key
		}
	}
	return ""
}

func knownKeys(fields []objectField) string {
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.key
	}
	return strings.Join(names, ", ")
}

// join appends a key to a JSON path.
func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// jsonKind names the JSON type of raw from its first significant byte:
// "object", "array", "string", "number", "boolean", "null", or "nothing" when
// raw is empty. It does not check that raw is well formed.
func jsonKind(raw []byte) string {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return "nothing"
	}
	switch c := raw[0]; {
	case c == '{':
		return "object"
	case c == '[':
		return "array"
	case c == '"':
		return "string"
	case c == 't' || c == 'f':
		return "boolean"
	case c == 'n':
		return "null"
	case c == '-' || (c >= '0' && c <= '9'):
		return "number"
	default:
		return "invalid JSON"
	}
}

// isNull reports whether raw is absent or the JSON literal null.
func isNull(raw json.RawMessage) bool {
	k := jsonKind(raw)
	return k == "nothing" || k == "null"
}

// article prefixes a JSON kind with "a" or "an" for messages.
func article(kind string) string {
	switch kind {
	case "nothing", "null":
		return kind
	case "object", "array", "invalid JSON":
		return "an " + kind
	default:
		return "a " + kind
	}
}
