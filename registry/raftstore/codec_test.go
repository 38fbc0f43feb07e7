package raftstore

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/raft"
)

func TestLogCodecRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		log  raft.Log
	}{
		{"zero", raft.Log{}},
		{"command", *testLog(12345)},
		{"max fields", raft.Log{Index: math.MaxUint64, Term: math.MaxUint64, Type: raft.LogType(255), Data: bytes.Repeat([]byte{0xff}, 1<<16), Extensions: []byte("ext")}},
		{"configuration without time", raft.Log{Index: 1, Term: 1, Type: raft.LogConfiguration, Data: []byte{1, 2, 3}}},
		{"time before 1970", raft.Log{Index: 2, AppendedAt: time.Date(1900, 1, 2, 3, 4, 5, 999_999_999, time.UTC)}},
		{"time far future", raft.Log{Index: 3, AppendedAt: time.Date(9999, 12, 31, 23, 59, 59, 1, time.UTC)}},
		{"unix epoch is not the zero time", raft.Log{Index: 4, AppendedAt: time.Unix(0, 0)}},
		{"now with monotonic reading", raft.Log{Index: 5, AppendedAt: time.Now()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := appendLog(nil, &tt.log)
			var got raft.Log
			if err := decodeLog(enc, &got); err != nil {
				t.Fatalf("decodeLog: %v", err)
			}
			if diff := cmp.Diff(tt.log, got, logOpts); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
			if got.AppendedAt.IsZero() != tt.log.AppendedAt.IsZero() {
				t.Errorf("AppendedAt.IsZero() = %v, want %v", got.AppendedAt.IsZero(), tt.log.AppendedAt.IsZero())
			}
			// Decoded slices must not alias the record: pebble reuses it.
			for i := range enc {
				enc[i] = 0xAA
			}
			if diff := cmp.Diff(tt.log, got, logOpts); diff != "" {
				t.Errorf("decoded log changed when the record buffer was overwritten (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeLogRejectsBadRecords(t *testing.T) {
	good := appendLog(nil, testLog(300))
	tests := []struct {
		name string
		rec  []byte
	}{
		{"empty", nil},
		{"version 0", append([]byte{0}, good[1:]...)},
		{"version 2", append([]byte{2}, good[1:]...)},
		{"trailing byte", append(append([]byte{}, good...), 0)},
		{"data length past end", []byte{1, 1, 1, 0, 100, 'x'}},
		{"huge data length", append([]byte{1, 1, 1, 0}, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)},
		{"varint overflow", []byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"bad time flag", []byte{1, 1, 1, 0, 0, 0, 7}},
		{"nanoseconds out of range", append([]byte{1, 1, 1, 0, 0, 0, 1, 0}, 0x80, 0x94, 0xeb, 0xdc, 0x03)}, // 1e9
	}
	// Every strict prefix of a good record is truncated and must fail.
	for n := range len(good) {
		tests = append(tests, struct {
			name string
			rec  []byte
		}{name: fmt.Sprintf("truncated to %d bytes", n), rec: good[:n]})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l raft.Log
			err := decodeLog(tt.rec, &l)
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("decodeLog(%x) = %v, want an error wrapping ErrCorrupt", tt.rec, err)
			}
		})
	}
}

func FuzzDecodeLog(f *testing.F) {
	f.Add([]byte{})
	f.Add(appendLog(nil, &raft.Log{}))
	f.Add(appendLog(nil, testLog(1)))
	f.Add(appendLog(nil, &raft.Log{Index: math.MaxUint64, Term: 3, Type: raft.LogConfiguration, Data: []byte("cfg"), AppendedAt: time.Unix(-1, 5)}))
	f.Fuzz(func(t *testing.T, rec []byte) {
		var l raft.Log
		if err := decodeLog(rec, &l); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decodeLog error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		// Whatever decodes must survive encode → decode unchanged.
		var again raft.Log
		if err := decodeLog(appendLog(nil, &l), &again); err != nil {
			t.Fatalf("re-encoding of a decoded record does not decode: %v", err)
		}
		if diff := cmp.Diff(l, again, logOpts); diff != "" {
			t.Fatalf("encode→decode changed the log (-first +second):\n%s", diff)
		}
	})
}

func FuzzLogRoundTrip(f *testing.F) {
	f.Add(uint64(1), uint64(1), uint8(0), []byte("x"), []byte(nil), int64(1_700_000_000), int64(5), true)
	f.Add(uint64(math.MaxUint64), uint64(0), uint8(255), []byte(nil), []byte("e"), int64(math.MinInt64), int64(0), false)
	f.Fuzz(func(t *testing.T, index, term uint64, typ uint8, data, ext []byte, sec, nsec int64, hasTime bool) {
		want := raft.Log{Index: index, Term: term, Type: raft.LogType(typ), Data: data, Extensions: ext}
		if hasTime {
			want.AppendedAt = time.Unix(sec, nsec)
		}
		var got raft.Log
		if err := decodeLog(appendLog(nil, &want), &got); err != nil {
			t.Fatalf("decodeLog(appendLog(%+v)): %v", want, err)
		}
		if diff := cmp.Diff(want, got, logOpts); diff != "" {
			t.Fatalf("round trip (-want +got):\n%s", diff)
		}
	})
}
