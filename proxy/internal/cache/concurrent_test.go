package cache

import (
	"bytes"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// backend is a fake database for TestConcurrent. Each table has a
// version that writes bump; an answer records the versions it read. A
// write bumps the version, then invalidates, as a change stream reports a
// committed change; once the invalidation has returned, the version
// becomes the table's floor: no answer served after that may predate it.
type backend struct {
	versions map[tableRef]*atomic.Uint64
	floors   map[tableRef]*atomic.Uint64
}

func newBackend(dbs, tables []string) *backend {
	b := &backend{
		versions: make(map[tableRef]*atomic.Uint64),
		floors:   make(map[tableRef]*atomic.Uint64),
	}
	for _, db := range dbs {
		for _, tb := range tables {
			b.versions[tableRef{db, tb}] = new(atomic.Uint64)
			b.floors[tableRef{db, tb}] = new(atomic.Uint64)
		}
	}
	return b
}

// write changes the given tables of db and reports it to s with
// invalidate.
func (b *backend) write(db string, tables []string, invalidate func()) {
	vs := make([]uint64, len(tables))
	for i, tb := range tables {
		vs[i] = b.versions[tableRef{db, tb}].Add(1)
	}
	invalidate()
	for i, tb := range tables {
		floor := b.floors[tableRef{db, tb}]
		for {
			old := floor.Load()
			if old >= vs[i] || floor.CompareAndSwap(old, vs[i]) {
				break
			}
		}
	}
}

// answer reads the tables; the caller has called Begin, as the proxy
// does before sending a query.
func (b *backend) answer(key, db string, tables []string) []byte {
	v := []byte(key + "|")
	for _, tb := range tables {
		v = strconv.AppendUint(v, b.versions[tableRef{db, tb}].Load(), 10)
		v = append(v, ',')
	}
	return v
}

// floorsOf returns the current floors of tables.
func (b *backend) floorsOf(db string, tables []string) []uint64 {
	fs := make([]uint64, len(tables))
	for i, tb := range tables {
		fs[i] = b.floors[tableRef{db, tb}].Load()
	}
	return fs
}

// stale reports whether answer read a version of some table older than
// floors, or current versions if floors is nil.
func (b *backend) stale(answer []byte, db string, tables []string, floors []uint64) bool {
	_, vs, _ := strings.Cut(string(answer), "|")
	for i, tb := range tables {
		var v string
		v, vs, _ = strings.Cut(vs, ",")
		n, _ := strconv.ParseUint(v, 10, 64)
		want := b.versions[tableRef{db, tb}].Load()
		if floors != nil {
			want = floors[i]
		}
		if n < want {
			return true
		}
	}
	return false
}

// TestConcurrent runs 50 goroutines over overlapping keys: gets, waits,
// fills, writes with invalidation, TTL expiry and eviction, with and
// without forced hash collisions. Every hit must be the key's own answer
// and not older than the last invalidation that returned before the Get;
// afterwards the bookkeeping must add up and every remaining entry must be
// current.
func TestConcurrent(t *testing.T) {
	for _, collide := range []bool{false, true} {
		t.Run(fmt.Sprintf("collide=%v", collide), func(t *testing.T) {
			testConcurrent(t, collide)
		})
	}
}

func testConcurrent(t *testing.T, collide bool) {
	const (
		goroutines = 50
		ops        = 2000
		nkeys      = 64
	)
	dbs := []string{"app", "shop"}
	tableNames := []string{"t0", "t1", "t2", "t3"}
	b := newBackend(dbs, tableNames)
	type keyInfo struct {
		key    string
		db     string
		tables []string
	}
	keys := make([]keyInfo, nkeys)
	for i := range keys {
		keys[i] = keyInfo{
			key:    "key" + strconv.Itoa(i),
			db:     dbs[i%len(dbs)],
			tables: []string{tableNames[i%4], tableNames[(i/4+1+i)%4]},
		}
	}

	var clk clock
	var evicted atomic.Int64
	s := New(Config{
		MaxBytes: 12 * sizeOf("key00", "key00", "app", []string{"t0", "t1"}, 20),
		Now:      clk.Now,
		OnEvict:  func(string) { evicted.Add(1) },
	})
	if collide {
		// 32 hashes for 64 keys.
		seed := maphash.MakeSeed()
		s.testHash = func(k string) uint64 { return maphash.String(seed, k) % 32 }
	}

	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range ops {
				k := keys[r.IntN(nkeys)]
				key := []byte(k.key)
				switch n := r.IntN(100); {
				case n < 5: // a write to one table
					db, tb := dbs[r.IntN(len(dbs))], tableNames[r.IntN(len(tableNames))]
					b.write(db, []string{tb}, func() { s.InvalidateTable(db, tb) })
				case n < 6: // a write the change stream can't place
					db := dbs[r.IntN(len(dbs))]
					b.write(db, tableNames, func() { s.InvalidateDB(db) })
				case n < 7:
					clk.Advance(time.Second)
				case n < 8:
					s.Top(5)
					s.Stats()
				default: // a read through the cache
					floors := b.floorsOf(k.db, k.tables)
					if v := s.Get(key); v != nil {
						if !bytes.HasPrefix(v, []byte(k.key+"|")) {
							t.Errorf("Get(%q) = %q: another key's answer", k.key, v)
						} else if b.stale(v, k.db, k.tables, floors) {
							t.Errorf("Get(%q) = %q: older than floors %v", k.key, v, floors)
						}
						continue
					}
					if w := s.Wait(key); w != nil {
						<-w
						if s.Get(key) != nil {
							continue
						}
					}
					f := s.Begin(key, k.key, k.db, k.tables, time.Duration(r.IntN(3))*time.Second)
					v := b.answer(k.key, k.db, k.tables)
					runtime.Gosched() // let writes land while "the query runs"
					if r.IntN(10) == 0 {
						s.Abort(f)
					} else {
						s.Commit(f, v)
					}
				}
			}
		})
	}
	wg.Wait()

	checkInvariants(t, s)
	st := s.Stats()
	if int64(st.Evictions+st.Expirations) != evicted.Load() {
		t.Errorf("OnEvict called %d times, Stats count %d evictions + %d expirations",
			evicted.Load(), st.Evictions, st.Expirations)
	}
	if st.Evictions == 0 {
		t.Error("no capacity evictions: budget too large to exercise them")
	}
	if len(s.flights) != 0 {
		t.Errorf("%d fills still registered after all ended", len(s.flights))
	}
	s.mu.Lock()
	entries := s.lru.Values()
	s.mu.Unlock()
	for _, e := range entries {
		if b.stale(e.value, e.db, e.tables, nil) {
			t.Errorf("stale entry survived: %q with db %s tables %q", e.value, e.db, e.tables)
		}
	}
	t.Logf("%+v", st)
}
