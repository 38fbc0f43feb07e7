package validate

import (
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxDepth is how deeply arrays and objects may nest in tool arguments.
// Deeper arguments are refused before validation: no real tool takes them,
// and both the decoder and the validator recurse per level.
const MaxDepth = 256

// maxExponent bounds the explicit exponent of a number literal. math/big,
// which the validator uses for exact comparisons, refuses exponents beyond
// ±1e6 (and the validator then dereferences a nil *big.Rat) and is slow well
// before that; no IEEE 754 double needs an exponent beyond ±400 or so.
const maxExponent = 1000

// decodeArgs decodes tool arguments into the values jsonschema validates:
// map[string]any, []any, string, json.Number, bool and nil.
//
// It is written here rather than taken from encoding/json because
// encoding/json accepts what an upstream may read differently, and a
// gateway that validates one reading while the upstream acts on another
// has validated nothing: encoding/json keeps the last of duplicate keys
// ({"amount_cents":5,"amount_cents":-5}), replaces invalid UTF-8 and lone
// surrogates with U+FFFD, and accepts numbers that overflow a double.
// encoding/json/v2 refuses duplicates but is behind GOEXPERIMENT in Go
// 1.26. decodeArgs accepts I-JSON (RFC 7493) only: the same grammar as
// encoding/json (a fuzz test checks the two agree wherever decodeArgs
// accepts), minus those ambiguities. It is also about twice as fast.
//
// The error is a *Error with one violation of rule "json" at the JSON
// pointer where the problem was found.
func decodeArgs(data []byte) (any, error) {
	d := decoder{data: data}
	d.skipSpace()
	v, err := d.value()
	if err != nil {
		return nil, err
	}
	d.skipSpace()
	if d.pos < len(d.data) {
		return nil, d.errorf("is not valid JSON: unexpected %s after the arguments object at byte %d; send exactly one JSON object", d.describe(), d.pos)
	}
	return v, nil
}

// decoder is a single-use recursive-descent JSON parser over data.
type decoder struct {
	data  []byte
	pos   int
	depth int
	// path holds the unescaped tokens of the value being decoded, for
	// error locations.
	path []string
	// buf is scratch space for strings with escapes.
	buf []byte
}

func (d *decoder) errorf(format string, args ...any) error {
	return &Error{Violations: []Violation{{
		Path:    pointer(d.path),
		Rule:    "json",
		Message: fmt.Sprintf(format, args...),
	}}}
}

// describe names the byte at pos for an error message.
func (d *decoder) describe() string {
	if d.pos >= len(d.data) {
		return "end of input"
	}
	return describeByte(d.data[d.pos])
}

// describeByte names a byte for a one-line message: printable ASCII as
// itself, anything else in hex.
func describeByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return fmt.Sprintf("character %q", c)
	}
	return fmt.Sprintf("byte 0x%02x", c)
}

func (d *decoder) skipSpace() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *decoder) value() (any, error) {
	if d.pos >= len(d.data) {
		return nil, d.errorf("is not valid JSON: unexpected end of input; send a complete JSON object")
	}
	switch c := d.data[d.pos]; {
	case c == '{':
		return d.object()
	case c == '[':
		return d.array()
	case c == '"':
		return d.string()
	case c == '-' || (c >= '0' && c <= '9'):
		return d.number()
	case c == 't':
		return true, d.literal("true")
	case c == 'f':
		return false, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	default:
		return nil, d.errorf("is not valid JSON: unexpected %s at byte %d", d.describe(), d.pos)
	}
}

func (d *decoder) literal(lit string) error {
	if len(d.data)-d.pos < len(lit) || string(d.data[d.pos:d.pos+len(lit)]) != lit {
		return d.errorf("is not valid JSON: unexpected %s at byte %d", d.describe(), d.pos)
	}
	d.pos += len(lit)
	return nil
}

func (d *decoder) enter() error {
	d.depth++
	if d.depth > MaxDepth {
		return d.errorf("nests arrays and objects deeper than %d levels; flatten the arguments", MaxDepth)
	}
	return nil
}

func (d *decoder) object() (any, error) {
	if err := d.enter(); err != nil {
		return nil, err
	}
	d.pos++ // '{'
	obj := make(map[string]any)
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == '}' {
		d.pos++
		d.depth--
		return obj, nil
	}
	for {
		d.skipSpace()
		if d.pos >= len(d.data) || d.data[d.pos] != '"' {
			return nil, d.errorf("is not valid JSON: expected a quoted object key at byte %d, got %s", d.pos, d.describe())
		}
		key, err := d.string()
		if err != nil {
			return nil, err
		}
		d.path = append(d.path, key)
		if _, dup := obj[key]; dup {
			return nil, d.errorf("is a duplicate key: send each key of an object once, since readers disagree about which copy counts")
		}
		d.skipSpace()
		if d.pos >= len(d.data) || d.data[d.pos] != ':' {
			return nil, d.errorf("is not valid JSON: expected ':' after the key at byte %d, got %s", d.pos, d.describe())
		}
		d.pos++
		d.skipSpace()
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		obj[key] = v
		d.path = d.path[:len(d.path)-1]
		d.skipSpace()
		if d.pos >= len(d.data) {
			return nil, d.errorf("is not valid JSON: unexpected end of input inside an object; close it with '}'")
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
		case '}':
			d.pos++
			d.depth--
			return obj, nil
		default:
			return nil, d.errorf("is not valid JSON: expected ',' or '}' at byte %d, got %s", d.pos, d.describe())
		}
	}
}

func (d *decoder) array() (any, error) {
	if err := d.enter(); err != nil {
		return nil, err
	}
	d.pos++ // '['
	arr := []any{}
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == ']' {
		d.pos++
		d.depth--
		return arr, nil
	}
	for {
		d.skipSpace()
		d.path = append(d.path, strconv.Itoa(len(arr)))
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		d.path = d.path[:len(d.path)-1]
		arr = append(arr, v)
		d.skipSpace()
		if d.pos >= len(d.data) {
			return nil, d.errorf("is not valid JSON: unexpected end of input inside an array; close it with ']'")
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
		case ']':
			d.pos++
			d.depth--
			return arr, nil
		default:
			return nil, d.errorf("is not valid JSON: expected ',' or ']' at byte %d, got %s", d.pos, d.describe())
		}
	}
}

// string decodes the string starting at the opening quote at pos.
func (d *decoder) string() (string, error) {
	d.pos++ // '"'
	start := d.pos
	// Fast path: no escapes, ASCII or valid UTF-8.
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			s := string(d.data[start:d.pos])
			d.pos++
			return s, nil
		case c == '\\':
			return d.slowString(start)
		case c < 0x20:
			return "", d.errorf("is not valid JSON: control character 0x%02x inside a string at byte %d; escape it", c, d.pos)
		case c < utf8.RuneSelf:
			d.pos++
		default:
			r, size := utf8.DecodeRune(d.data[d.pos:])
			if r == utf8.RuneError && size <= 1 {
				return "", d.errorf("holds invalid UTF-8 at byte %d; send UTF-8 text", d.pos)
			}
			d.pos += size
		}
	}
	return "", d.errorf("is not valid JSON: unterminated string starting at byte %d", start-1)
}

// slowString continues a string from pos, where the first escape is, with
// the bytes from start to pos already checked.
func (d *decoder) slowString(start int) (string, error) {
	b := append(d.buf[:0], d.data[start:d.pos]...)
	defer func() { d.buf = b[:0] }()
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			d.pos++
			return string(b), nil
		case c == '\\':
			if d.pos+1 >= len(d.data) {
				return "", d.errorf("is not valid JSON: unterminated string starting at byte %d", start-1)
			}
			esc := d.data[d.pos+1]
			d.pos += 2
			switch esc {
			case '"', '\\', '/':
				b = append(b, esc)
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				r, ok := d.hex4()
				if !ok {
					return "", d.errorf("is not valid JSON: bad \\u escape at byte %d; use four hex digits", d.pos-2)
				}
				if utf16.IsSurrogate(r) {
					if r >= 0xdc00 || d.pos+1 >= len(d.data) || d.data[d.pos] != '\\' || d.data[d.pos+1] != 'u' {
						return "", d.errorf("holds a lone UTF-16 surrogate \\u%04x at byte %d; send a valid pair or the character itself", r, d.pos-6)
					}
					d.pos += 2
					r2, ok := d.hex4()
					if !ok {
						return "", d.errorf("is not valid JSON: bad \\u escape at byte %d; use four hex digits", d.pos-2)
					}
					r = utf16.DecodeRune(r, r2)
					if r == utf8.RuneError {
						return "", d.errorf("holds a lone UTF-16 surrogate at byte %d; send a valid pair or the character itself", d.pos-12)
					}
				}
				b = utf8.AppendRune(b, r)
			default:
				return "", d.errorf("is not valid JSON: unknown escape of %s after '\\' at byte %d", describeByte(esc), d.pos-2)
			}
		case c < 0x20:
			return "", d.errorf("is not valid JSON: control character 0x%02x inside a string at byte %d; escape it", c, d.pos)
		case c < utf8.RuneSelf:
			b = append(b, c)
			d.pos++
		default:
			r, size := utf8.DecodeRune(d.data[d.pos:])
			if r == utf8.RuneError && size <= 1 {
				return "", d.errorf("holds invalid UTF-8 at byte %d; send UTF-8 text", d.pos)
			}
			b = append(b, d.data[d.pos:d.pos+size]...)
			d.pos += size
		}
	}
	return "", d.errorf("is not valid JSON: unterminated string starting at byte %d", start-1)
}

// hex4 reads four hex digits at pos.
func (d *decoder) hex4() (rune, bool) {
	if d.pos+4 > len(d.data) {
		return 0, false
	}
	var r rune
	for _, c := range d.data[d.pos : d.pos+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	d.pos += 4
	return r, true
}

// number decodes a number by the JSON grammar
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? and refuses values a
// double cannot hold.
func (d *decoder) number() (any, error) {
	start := d.pos
	bad := func() error {
		return d.errorf("is not valid JSON: malformed number at byte %d", start)
	}
	if d.data[d.pos] == '-' {
		d.pos++
	}
	nonzero := false
	switch {
	case d.pos < len(d.data) && d.data[d.pos] == '0':
		d.pos++
	case d.pos < len(d.data) && d.data[d.pos] >= '1' && d.data[d.pos] <= '9':
		nonzero = true
		for d.pos < len(d.data) && isDigit(d.data[d.pos]) {
			d.pos++
		}
	default:
		return nil, bad()
	}
	if d.pos < len(d.data) && d.data[d.pos] == '.' {
		d.pos++
		if d.pos >= len(d.data) || !isDigit(d.data[d.pos]) {
			return nil, bad()
		}
		for d.pos < len(d.data) && isDigit(d.data[d.pos]) {
			nonzero = nonzero || d.data[d.pos] != '0'
			d.pos++
		}
	}
	if d.pos < len(d.data) && (d.data[d.pos] == 'e' || d.data[d.pos] == 'E') {
		d.pos++
		if d.pos < len(d.data) && (d.data[d.pos] == '+' || d.data[d.pos] == '-') {
			d.pos++
		}
		if d.pos >= len(d.data) || !isDigit(d.data[d.pos]) {
			return nil, bad()
		}
		exp := 0
		for d.pos < len(d.data) && isDigit(d.data[d.pos]) {
			if exp <= maxExponent {
				exp = exp*10 + int(d.data[d.pos]-'0')
			}
			d.pos++
		}
		if exp > maxExponent {
			return nil, d.errorf("is a number with an exponent beyond ±%d, out of the range of an IEEE 754 double", maxExponent)
		}
	}
	s := string(d.data[start:d.pos])
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil, d.errorf("is a number out of the range of an IEEE 754 double (about ±1.8e308); send a smaller number")
	}
	if f == 0 && nonzero {
		return nil, d.errorf("is a number too close to zero for an IEEE 754 double; send 0 or a larger number")
	}
	return json.Number(s), nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
