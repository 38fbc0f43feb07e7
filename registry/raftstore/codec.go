package raftstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// ErrCorrupt is wrapped by every error reporting a stored record that cannot
// be decoded. It means the database holds bytes this package did not write,
// or wrote with a newer layout; the store cannot repair it.
var ErrCorrupt = errors.New("raftstore: corrupt record")

// logRecordV1 is the version byte of the only log record layout so far.
const logRecordV1 = 1

// appendLog appends the encoding of l to dst and returns the extended slice.
func appendLog(dst []byte, l *raft.Log) []byte {
	dst = append(dst, logRecordV1)
	dst = binary.AppendUvarint(dst, l.Index)
	dst = binary.AppendUvarint(dst, l.Term)
	dst = append(dst, byte(l.Type))
	dst = binary.AppendUvarint(dst, uint64(len(l.Data)))
	dst = append(dst, l.Data...)
	dst = binary.AppendUvarint(dst, uint64(len(l.Extensions)))
	dst = append(dst, l.Extensions...)
	if l.AppendedAt.IsZero() {
		return append(dst, 0)
	}
	dst = append(dst, 1)
	dst = binary.AppendVarint(dst, l.AppendedAt.Unix())
	return binary.AppendUvarint(dst, uint64(l.AppendedAt.Nanosecond()))
}

// decodeLog decodes a record written by appendLog into l. Data and
// Extensions are copied, so b may be reused afterwards. A malformed record
// yields an error wrapping ErrCorrupt and leaves l in an unspecified state.
func decodeLog(b []byte, l *raft.Log) error {
	d := decoder{b: b}
	if v := d.byte("version"); d.err == nil && v != logRecordV1 {
		return fmt.Errorf("%w: log record version %d, this build reads only %d", ErrCorrupt, v, logRecordV1)
	}
	l.Index = d.uvarint("index")
	l.Term = d.uvarint("term")
	l.Type = raft.LogType(d.byte("type"))
	l.Data = d.bytes("data")
	l.Extensions = d.bytes("extensions")
	switch has := d.byte("appended-at flag"); {
	case d.err != nil:
	case has == 0:
		l.AppendedAt = time.Time{}
	case has == 1:
		sec := d.varint("appended-at seconds")
		nsec := d.uvarint("appended-at nanoseconds")
		if d.err == nil && nsec >= uint64(time.Second) {
			d.fail(fmt.Errorf("appended-at nanoseconds %d out of range", nsec))
		}
		l.AppendedAt = time.Unix(sec, int64(nsec))
	default:
		d.fail(fmt.Errorf("appended-at flag %d is neither 0 nor 1", has))
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail(fmt.Errorf("%d trailing bytes", len(d.b)))
	}
	if d.err != nil {
		return fmt.Errorf("%w: log record: %w", ErrCorrupt, d.err)
	}
	return nil
}

// decoder reads fields from b, remembering the first error so that callers
// can check once at the end.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *decoder) byte(field string) byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail(fmt.Errorf("truncated before %s", field))
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(fmt.Errorf("bad or truncated %s", field))
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint(field string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(fmt.Errorf("bad or truncated %s", field))
		return 0
	}
	d.b = d.b[n:]
	return v
}

// bytes reads a uvarint length and that many bytes, returning a copy (nil
// when the length is zero).
func (d *decoder) bytes(field string) []byte {
	n := d.uvarint(field + " length")
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail(fmt.Errorf("%s length %d exceeds the %d bytes left", field, n, len(d.b)))
		return nil
	}
	if n == 0 {
		return nil
	}
	v := make([]byte, n)
	copy(v, d.b[:n])
	d.b = d.b[n:]
	return v
}
