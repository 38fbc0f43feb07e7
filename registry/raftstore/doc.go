// Package raftstore keeps a node's Raft log and Raft stable state in pebble.
//
// A [Store] implements hashicorp/raft's [raft.LogStore], [raft.StableStore] and
// [raft.MonotonicLogStore] on top of one pebble database in its own directory.
// We write this adapter ourselves because no maintained pebble-backed Raft log
// store exists; CockroachDB keeps its Raft log in pebble the same way.
//
// The package owns the on-disk layout of that database and nothing else:
//
//   - 'l' + big-endian uint64 index → one encoded [raft.Log] (see below), so
//     an iterator over the 'l' prefix visits entries in index order;
//   - 's' + key → a stable-store value (SetUint64 stores 8 big-endian bytes,
//     as raft-boltdb does, so Get and GetUint64 share one keyspace);
//   - 'm' + name → store metadata (today only the layout version).
//
// A log record is a compact, versioned binary encoding: a version byte (1),
// then uvarint index, uvarint term, one type byte, uvarint-length-prefixed
// data and extensions, and AppendedAt as a presence byte followed by varint
// Unix seconds and uvarint nanoseconds. Decoding rejects a truncated, padded
// or otherwise malformed record with an error wrapping [ErrCorrupt]; it never
// panics. Records carry no checksum of their own because pebble checksums
// its WAL records and sstable blocks.
//
// Durability: by default every StoreLog, StoreLogs, DeleteRange, Set and
// SetUint64 commits one pebble batch with fsync before returning, which is
// what Raft assumes of its log and stable store. [Config.NoSync] drops the
// fsync for tests and benchmarks; a crash may then lose a suffix of the most
// recent writes (never a middle part, so no gaps appear in the log).
//
// The package does not own the Raft snapshot store, the FSM's state, or the
// log cache: callers wrap a Store in [raft.NewLogCache] themselves. It keeps
// no in-memory copy of FirstIndex or LastIndex; both are answered by seeking
// an iterator, which stays correct under range deletions.
package raftstore
