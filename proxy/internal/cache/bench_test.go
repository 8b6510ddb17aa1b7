package cache

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

func BenchmarkGetHit(b *testing.B) {
	s := New(Config{})
	key := []byte("\x00\x00\x00\x01SELECT id, name FROM users WHERE id = $1\x00\x00\x00\x0442")
	put(b, s, item{key: string(key), db: "app", tables: []string{"users"}, ttl: time.Minute, value: strings.Repeat("D", 512)})
	b.ReportAllocs()
	for b.Loop() {
		if s.Get(key) == nil {
			b.Fatal("miss")
		}
	}
}

func BenchmarkGetMiss(b *testing.B) {
	s := New(Config{})
	put(b, s, item{key: "other", db: "app", value: "v"})
	key := []byte("\x00\x00\x00\x01SELECT id, name FROM users WHERE id = $1\x00\x00\x00\x0442")
	b.ReportAllocs()
	for b.Loop() {
		if s.Get(key) != nil {
			b.Fatal("hit")
		}
	}
}

// BenchmarkCommit fills 512-byte answers over 100,000 keys in a store
// that holds about 10,000 of them, so most commits also evict.
func BenchmarkCommit(b *testing.B) {
	value := []byte(strings.Repeat("D", 512))
	keys := make([][]byte, 100_000)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "SELECT * FROM users WHERE id = %d", i)
	}
	tables := []string{"users"}
	s := New(Config{MaxBytes: 10_000 * sizeOf(string(keys[0]), "", "app", tables, len(value))})
	b.ReportAllocs()
	b.SetBytes(int64(len(value)))
	i := 0
	for b.Loop() {
		f := s.Begin(keys[i%len(keys)], "", "app", tables, time.Minute)
		if ok, why := s.Commit(f, value); !ok {
			b.Fatal(why)
		}
		i++
	}
}

// BenchmarkCommitRow is BenchmarkCommit for answers about one row each,
// as point reads by primary key are stored.
func BenchmarkCommitRow(b *testing.B) {
	value := []byte(strings.Repeat("D", 512))
	keys := make([][]byte, 100_000)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "SELECT * FROM users WHERE id = %d", i)
	}
	s := New(Config{MaxBytes: 10_000 * sizeOf(string(keys[0]), "", "app", []string{"users"}, len(value))})
	b.ReportAllocs()
	b.SetBytes(int64(len(value)))
	i := 0
	for b.Loop() {
		n := i % len(keys)
		f := s.BeginRow(keys[n], "", "app", Row{Table: "users", Column: "id", Key: strconv.Itoa(n)}, time.Minute)
		if ok, why := s.Commit(f, value); !ok {
			b.Fatal(why)
		}
		i++
	}
}

// BenchmarkInvalidateTable removes the n entries of one table from a store
// that also holds 1,000 entries of another. After a round over 1,000
// tables, the store is rebuilt untimed from the same immutable entries: a
// fresh one, since refilling a drained map would measure probing past its
// tombstones.
func BenchmarkInvalidateTable(b *testing.B) {
	for _, n := range []int{0, 1, 100} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			const tables = 1000
			s := New(Config{})
			names := make([]string, tables)
			for tb := range names {
				names[tb] = "t" + strconv.Itoa(tb)
				for i := range n {
					put(b, s, item{key: fmt.Sprintf("%s/%d", names[tb], i), db: "app", tables: []string{names[tb]}, value: "v"})
				}
			}
			for i := range 1000 {
				put(b, s, item{key: "o" + strconv.Itoa(i), db: "app", tables: []string{"orders"}, value: "v"})
			}
			all := s.lru.Values()
			b.ReportAllocs()
			tb := 0
			for b.Loop() {
				if tb == tables {
					b.StopTimer()
					gens := s.tableGen // keep: steady state invalidates known tables
					s = New(Config{})
					s.tableGen = gens
					for _, e := range all {
						s.lru.Add(s.hashOf(e), e)
						s.bytes += e.size
						s.index(e)
					}
					b.StartTimer()
					tb = 0
				}
				if got := s.InvalidateTable("app", names[tb]); got != n {
					b.Fatalf("removed %d, want %d", got, n)
				}
				tb++
			}
		})
	}
}
