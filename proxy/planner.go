package proxy

import (
	"context"
	"encoding/binary"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/sqlcache/sqlcache/cachepolicy"
)

// plan is everything decided about one SQL text in one database: what it
// writes and changes (from the parse alone) and, for a SELECT, whether and
// how its answer may be cached (which needs the catalog). Plans are shared
// and immutable once built.
type plan struct {
	sql string
	// digest stands for sql in cache keys; label names it in the
	// store's Top (short, and a copy: it outlives the plan in entries).
	digest   [cachepolicy.DigestSize]byte
	label    string
	analysis *cachepolicy.Analysis
	// shape is the analysis of the shape sql's analysis was taken from
	// (cachepolicy.Reuse), or is itself; nil if it is of no shape whose
	// texts may share a decision (planner.decided).
	shape *cachepolicy.Analysis
	// decided is false until the catalog was consulted (only candidates
	// are ever decided).
	decided  bool
	decision cachepolicy.Decision
	// writesOnly: (decided) the statements write, and change nothing but
	// the relations they name (cachepolicy.WritesOnlyNamed).
	writesOnly bool
	// writeBases: (decided) the relations the views among the tables it
	// writes read: a write through an automatically updatable view
	// writes them.
	writeBases []string
	// writeRow: (decided) the statement writes one row of one table,
	// picked by its primary key (cachepolicy.WriteRow).
	writeRow *cachepolicy.RowRead
	// setsSettings: (decided) a function the statements call or their
	// writes run that may change the session's settings
	// (planner.writeSetter), or "".
	setsSettings string
	// changesCatalog: (decided) a volatile function the statements call
	// or their writes run that may run DDL (cachepolicy.CatalogChanger),
	// or "": the statement is then taken to change the catalog.
	changesCatalog string
	epoch          uint64 // the database's catalog epoch when decided
	// changes: the database's count of catalog changes (planner.changes)
	// read before the facts the decision rests on.
	changes uint64
	// transient: the plan was made cheaply from a known shape for a text
	// seen for the first time, and is not kept in the shared plan cache
	// (planner.admit).
	transient bool
}

// planner builds and caches plans per database.
type planner struct {
	catalog    *catalog
	rules      []cachepolicy.Rule
	defaultTTL time.Duration
	// streamed: invalidation follows the change stream, which never
	// carries some changes; answers depending on them need a TTL rule.
	streamed bool

	mu     sync.Mutex // protects epochs and changes
	epochs map[string]*atomic.Uint64
	// changes counts, per database, the catalog changes seen (forget): DDL
	// through sqlcache and changes the access checks found; not the
	// periodic forgetAll. Sessions whose settings were read back compare
	// it (sessionState.readBackGen).
	changes map[string]*atomic.Uint64
	// changedAt says, per database, at which count of changes each
	// relation name last changed (forgetNames), or every name ("").
	// Prepared statements parsed before then may mean something else by
	// it than a fresh parse (statementStale).
	changedAt map[string]map[string]nameChange
	// checks counts, per database, the access checks begun: a change a
	// check finds was made after the one before it began.
	checks map[string]*atomic.Uint64

	plans *sizedLRU[planKey, *plan] // safe for concurrent use
	// shapes holds one candidate analysis per query shape, so that texts
	// differing only in constants are not parsed in full again.
	shapes *sizedLRU[uint64, *cachepolicy.Analysis]
	// spellings holds a scanned shape per skeleton (cachepolicy.Skeleton),
	// so that a text differing from it only in integers is respelled,
	// not scanned again.
	spellings *sizedLRU[uint64, *cachepolicy.Shape]
	// seen remembers fingerprints of texts planned from a known shape but
	// not kept (admit); direct-mapped, so a fingerprint is forgotten when
	// another takes its slot.
	seen [seenSlots]atomic.Uint64

	// textRules: a rule matches on the SQL text (Rule.Query), so texts
	// of one shape may be decided differently and decisions are not
	// shared among them.
	textRules bool
	shapesMu  sync.Mutex // protects decided
	// decided holds the decision made for a text of each shape (plan.shape),
	// per database and epoch: another text of the shape takes it with its
	// own row (Decision.ForRows) instead of deciding again. Emptied when
	// it reaches maxDecided and when an epoch changes.
	decided map[shapeKey]shapeDecision

	noisyMu sync.Mutex // protects noisy
	// noisy holds the texts (by database and digest) during whose run
	// PostgreSQL sent a notice: their answers are not stored
	// (session.noticed). Emptied when it reaches maxNoisy.
	noisy map[noisyKey]struct{}
}

type noisyKey struct {
	db     string
	digest [cachepolicy.DigestSize]byte
}

// maxNoisy bounds planner.noisy.
const maxNoisy = 100000

// markNoisy records that PostgreSQL sent a notice while running the text
// of digest in db.
func (pl *planner) markNoisy(db string, digest [cachepolicy.DigestSize]byte) {
	pl.noisyMu.Lock()
	defer pl.noisyMu.Unlock()
	if pl.noisy == nil || len(pl.noisy) >= maxNoisy {
		pl.noisy = make(map[noisyKey]struct{})
	}
	pl.noisy[noisyKey{db, digest}] = struct{}{}
}

// isNoisy reports whether markNoisy recorded the text of digest in db.
func (pl *planner) isNoisy(db string, digest [cachepolicy.DigestSize]byte) bool {
	pl.noisyMu.Lock()
	defer pl.noisyMu.Unlock()
	_, ok := pl.noisy[noisyKey{db, digest}]
	return ok
}

// shapeKey identifies the decision for the texts of one shape in one
// database and epoch.
type shapeKey struct {
	db    string
	epoch uint64
	shape *cachepolicy.Analysis
}

type shapeDecision struct {
	decision       cachepolicy.Decision
	writesOnly     bool
	setsSettings   string
	changesCatalog string
}

// maxDecided bounds planner.decided.
const maxDecided = 4096

// seenSlots sizes planner.seen: 128 KiB.
const seenSlots = 1 << 14

type planKey struct{ db, sql string }

// planCacheSize and planCacheBytes bound the shared plan cache, and
// shapeCacheBytes each of the shape caches: they live outside the
// cache's budget. Each session also keeps the plans it used last in a
// small map of its own.
const (
	planCacheSize   = 20000
	planCacheBytes  = 16 << 20
	shapeCacheBytes = 8 << 20
)

// maxShapeText: a longer text is analyzed on its own, never by its shape
// (planner.analysis), so that the shapes and the decisions made per shape
// (planner.decided), which hold texts, stay small. Parsing such a text
// again costs little beside sending it.
const maxShapeText = 8 << 10

func newPlanner(c *catalog, rules []cachepolicy.Rule, defaultTTL time.Duration) *planner {
	plans := newSizedLRU[planKey, *plan](planCacheSize, planCacheBytes)
	shapes := newSizedLRU[uint64, *cachepolicy.Analysis](planCacheSize, shapeCacheBytes)
	spellings := newSizedLRU[uint64, *cachepolicy.Shape](planCacheSize, shapeCacheBytes)
	textRules := slices.ContainsFunc(rules, func(r cachepolicy.Rule) bool { return r.Query != nil })
	return &planner{catalog: c, rules: rules, defaultTTL: defaultTTL, epochs: make(map[string]*atomic.Uint64),
		changes: make(map[string]*atomic.Uint64), changedAt: make(map[string]map[string]nameChange),
		checks: make(map[string]*atomic.Uint64), plans: plans, shapes: shapes, spellings: spellings, textRules: textRules}
}

// epoch returns the counter that invalidates a database's decisions when
// its catalog may have changed.
func (pl *planner) epoch(db string) *atomic.Uint64 {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return counter(pl.epochs, db)
}

// catalogChanges returns database db's count of catalog changes
// (planner.changes).
func (pl *planner) catalogChanges(db string) *atomic.Uint64 {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return counter(pl.changes, db)
}

// counter returns m's counter of db, adding it if missing.
func counter(m map[string]*atomic.Uint64, db string) *atomic.Uint64 {
	c := m[db]
	if c == nil {
		c = new(atomic.Uint64)
		m[db] = c
	}
	return c
}

// nameChange is the last change of a relation name (planner.changedAt):
// the count of changes it made, and from which access check on a
// statement parsed may have seen it already (seen elsewhere; noWindow
// when it went through sqlcache, which saw it at once).
type nameChange struct{ n, window uint64 }

const noWindow = math.MaxUint64

// forget makes every decision in db stale, after DDL through sqlcache.
func (pl *planner) forget(db string) { pl.forgetNames(db, nil, noWindow) }

// forgetNames makes every decision in db stale, after a change of the
// relations of the given names (nil: of any), made after access check
// number window began (noWindow: seen at once).
func (pl *planner) forgetNames(db string, names []string, window uint64) {
	pl.epoch(db).Add(1)
	pl.mu.Lock()
	n := counter(pl.changes, db).Add(1)
	at := pl.changedAt[db]
	if at == nil {
		at = make(map[string]nameChange)
		pl.changedAt[db] = at
	}
	if names == nil {
		names = []string{""}
	}
	for _, name := range names {
		at[name] = nameChange{n: n, window: min(window, at[name].windowIfSet())}
	}
	pl.mu.Unlock()
	pl.forgetShapes()
}

// windowIfSet is c's window, or noWindow if c is the zero value.
func (c nameChange) windowIfSet() uint64 {
	if c.n == 0 {
		return noWindow
	}
	return c.window
}

// statementStale reports whether a relation among tables (a decision's
// dependencies), or any if tables is nil, changed in database db since
// the count of changes parsed; and ambiguous, whether the statement was
// parsed after the access check that preceded the one that saw the
// change (checkSeq), so that it may have been parsed after the change
// too (planner.changedAt).
func (pl *planner) statementStale(db string, tables []string, parsed, checkSeq uint64) (stale, ambiguous bool) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	at := pl.changedAt[db]
	see := func(c nameChange) {
		if c.n > parsed {
			stale = true
			ambiguous = ambiguous || checkSeq >= c.window
		}
	}
	see(at[""])
	if tables == nil {
		return true, ambiguous || len(at) > 0 && checkSeq >= minWindow(at)
	}
	for _, t := range tables {
		see(at[t])
	}
	return stale, ambiguous
}

// minWindow is the earliest window among at's changes.
func minWindow(at map[string]nameChange) uint64 {
	w := uint64(noWindow)
	for _, c := range at {
		w = min(w, c.window)
	}
	return w
}

// checkSeq returns database db's count of access checks begun.
func (pl *planner) checkSeq(db string) *atomic.Uint64 {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return counter(pl.checks, db)
}

// forgetShapes empties planner.decided, whose entries of past epochs
// would never be found again.
func (pl *planner) forgetShapes() {
	pl.shapesMu.Lock()
	defer pl.shapesMu.Unlock()
	pl.decided = nil
}

// forgetAll makes every decision stale; run periodically so that catalog
// changes made behind sqlcache's back are picked up.
func (pl *planner) forgetAll() {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	for _, e := range pl.epochs {
		e.Add(1)
	}
	pl.forgetShapes()
}

// lookup is analyze for SQL text in a message buffer: a plan already made
// is found without copying the text.
func (pl *planner) lookup(db string, sql []byte) *plan {
	// The string aliases the buffer only for the map lookup; the plan
	// cache keeps no reference to a key it is only asked for.
	if p, ok := pl.plans.get(planKey{db, unsafe.String(unsafe.SliceData(sql), len(sql))}); ok {
		return p
	}
	return pl.build(db, string(sql))
}

// analyze returns the plan for sql without consulting the catalog.
func (pl *planner) analyze(db, sql string) *plan {
	if p, ok := pl.plans.get(planKey{db, sql}); ok {
		return p
	}
	return pl.build(db, sql)
}

// build makes the plan for sql, which the plan cache lacks, and keeps it
// there if admit says so.
func (pl *planner) build(db, sql string) *plan {
	a, shape, reused := pl.analysis(sql)
	p := newPlan(sql, a)
	p.shape = shape
	p.transient = reused && !pl.admit(p.digest)
	pl.keep(db, p)
	return p
}

// admit decides whether a plan made from a known shape is kept in the
// shared plan cache: only when its text was seen before. A client that
// inlines constants drawn from a large range (pgbench -S -M simple over a
// whole table) sends mostly texts it never repeats; keeping each would
// cost an insert and an eviction and push out the texts that do repeat,
// while making such a plan again costs little.
func (pl *planner) admit(digest [cachepolicy.DigestSize]byte) bool {
	fp := binary.LittleEndian.Uint64(digest[:8]) | 1 // never 0, the empty slot
	slot := &pl.seen[fp%seenSlots]
	if slot.Load() == fp {
		return true
	}
	slot.Store(fp)
	return false
}

// maxLabel bounds the SQL text kept with cached entries for Top.
const maxLabel = 200

func newPlan(sql string, a *cachepolicy.Analysis) *plan {
	label := sql
	if len(label) > maxLabel {
		label = strings.Clone(label[:maxLabel])
	}
	return &plan{sql: sql, digest: cachepolicy.Digest([]byte(sql)), label: label, analysis: a}
}

// analysis analyzes sql, reusing the analysis of a text of the same shape
// where the policy allows; reused reports that it did. shape is the
// analysis of sql's shape when other texts may reuse it, else nil.
func (pl *planner) analysis(sql string) (a, shape *cachepolicy.Analysis, reused bool) {
	if len(sql) > maxShapeText {
		return cachepolicy.Analyze(sql), nil, false
	}
	sh, err := pl.shapeOf(sql)
	if err != nil {
		return cachepolicy.Analyze(sql), nil, false
	}
	if known, ok := pl.shapes.get(sh.Hash); ok {
		if b, ok := cachepolicy.Reuse(known, sh); ok {
			return b, known, true
		}
	}
	a = cachepolicy.AnalyzeShape(sh)
	if _, ok := cachepolicy.Reuse(a, sh); ok {
		pl.shapes.add(sh.Hash, a, sh.Size())
		return a, a, false
	}
	return a, nil, false
}

// shapeOf is cachepolicy.ShapeOf, respelling a text scanned before where
// only integers differ: a client that inlines its keys sends many such.
func (pl *planner) shapeOf(sql string) (*cachepolicy.Shape, error) {
	skel, hasInts := cachepolicy.Skeleton(sql)
	if hasInts {
		if known, found := pl.spellings.get(skel); found {
			if sh, ok := known.Respell(sql); ok {
				return sh, nil
			}
		}
	}
	sh, err := cachepolicy.ShapeOf(sql)
	if err == nil && hasInts {
		pl.spellings.add(skel, sh, sh.Size())
	}
	return sh, err
}

// decide returns p with a current cache decision, looking the catalog up
// if needed. A candidate whose facts cannot be looked up is not cacheable
// (this time).
func (pl *planner) decide(ctx context.Context, db string, p *plan) *plan {
	return pl.decideIn(ctx, db, pl.epoch(db), p)
}

// decideIn is decide with db's epoch counter (planner.epoch) at hand:
// sessions keep theirs, so that a hit takes no planner-wide lock.
func (pl *planner) decideIn(ctx context.Context, db string, epoch *atomic.Uint64, p *plan) *plan {
	cur := epoch.Load()
	if p.decided && p.epoch == cur {
		return p
	}
	// The count first: a change made after it, even one whose epoch
	// this decision already has, shows when its fill begins.
	changes := pl.catalogChanges(db).Load()
	cur = epoch.Load()
	a := p.analysis
	np := &plan{sql: p.sql, digest: p.digest, label: p.label, analysis: a, shape: p.shape, decided: true, epoch: cur, changes: changes, transient: p.transient}
	if !a.Candidate {
		np.decision = cachepolicy.Decision{Reason: a.Reason, Rule: -1}
		// After DDL what it writes is moot (the catalog facts are about to
		// be forgotten); what it calls may still set settings.
		ddl := a.InvalidateAll || a.CatalogChange
		writes := a.Writes
		if ddl {
			writes = nil
		}
		if len(a.Calls) > 0 || len(writes) > 0 {
			facts, _, err := pl.catalog.facts(ctx, db, cur, writeSide(a.Calls, writes))
			var setter, changer string
			if err == nil {
				setter, changer, err = pl.writeSetter(ctx, db, cur, a.Calls, writes, facts)
			}
			if err != nil {
				// Not stored: the next statement tries again.
				np.setsSettings = pl.catalog.settingsSetter(db, a.Calls, writes)
				return np
			}
			np.setsSettings, np.changesCatalog = setter, changer
			np.writeBases = viewBases(writes, facts)
			if pl.streamed && !ddl {
				np.writesOnly = cachepolicy.WritesOnlyNamed(a, facts)
				if r, ok := cachepolicy.WriteRow(a, facts); ok {
					np.writeRow = &r
				}
			}
		}
		pl.keep(db, np)
		return np
	}
	// Texts of one shape differ in constants only, which a rule on the
	// text may tell apart.
	key, shared := shapeKey{db, cur, p.shape}, p.shape != nil && !pl.textRules
	if shared {
		if sd, ok := pl.shapeDecision(key); ok {
			np.decision = sd.decision.ForRows(a)
			np.writesOnly = sd.writesOnly
			np.setsSettings = sd.setsSettings
			np.changesCatalog = sd.changesCatalog
			pl.keep(db, np)
			return np
		}
	}
	facts, viewReason, err := pl.catalog.facts(ctx, db, cur, a)
	switch {
	case err != nil:
		np.decision = cachepolicy.Decision{Reason: "catalog lookup failed: " + err.Error(), Rule: -1}
		// Not stored: the next statement tries again.
		np.setsSettings = pl.catalog.settingsSetter(db, a.Calls, nil)
		return np
	}
	defer func() {
		if shared {
			pl.keepShapeDecision(key, np)
		}
	}()
	wa := withViews(a, facts)
	np.setsSettings = cachepolicy.SettingsSetter(wa.Functions, nil, facts)
	np.changesCatalog = cachepolicy.CatalogChanger(wa.Functions, nil, facts)
	switch {
	case viewReason != "":
		np.decision = cachepolicy.Decision{Reason: viewReason, Rule: -1}
	default:
		np.decision = cachepolicy.Decide(wa, p.sql, facts, pl.rules, pl.defaultTTL)
		if why := pl.unstreamed(np.decision, facts); why != "" {
			np.decision = cachepolicy.Decision{Reason: why, Rule: -1}
		}
	}
	if pl.streamed && !np.decision.Cacheable {
		// A SELECT that is not cached writes nothing if every function
		// it calls, its views' included, is built in.
		calls := &cachepolicy.Analysis{Calls: wa.Functions}
		np.writesOnly = cachepolicy.WritesOnlyNamed(calls, facts)
	}
	pl.keep(db, np)
	return np
}

// viewBases returns the relations that the views among writes read, as
// facts describe them.
func viewBases(writes []string, facts cachepolicy.Facts) []string {
	var bases []string
	for _, w := range writes {
		for _, ri := range facts.Relations[w] {
			if ri.Kind == 'v' {
				bases = append(bases, ri.Base...)
			}
		}
	}
	return bases
}

func (pl *planner) shapeDecision(k shapeKey) (shapeDecision, bool) {
	pl.shapesMu.Lock()
	defer pl.shapesMu.Unlock()
	sd, ok := pl.decided[k]
	return sd, ok
}

// keepShapeDecision remembers p's decision for the other texts of its
// shape.
func (pl *planner) keepShapeDecision(k shapeKey, p *plan) {
	pl.shapesMu.Lock()
	defer pl.shapesMu.Unlock()
	if pl.decided == nil || len(pl.decided) >= maxDecided {
		pl.decided = make(map[shapeKey]shapeDecision)
	}
	pl.decided[k] = shapeDecision{decision: p.decision, writesOnly: p.writesOnly, setsSettings: p.setsSettings, changesCatalog: p.changesCatalog}
}

// keep puts a decided plan in the shared plan cache unless it is transient.
func (pl *planner) keep(db string, p *plan) {
	if !p.transient {
		pl.plans.add(planKey{db, p.sql}, p, p.size())
	}
}

// size returns about how many bytes p holds: its text, its analysis's
// tokens, and the rest.
func (p *plan) size() int {
	n := len(p.sql) + 512
	if p.analysis != nil {
		n += len(p.analysis.Lexemes) * int(unsafe.Sizeof(cachepolicy.Lexeme{}))
	}
	return n
}

// writeSetter returns which function, of those calls and those writes of
// the relations writes run (cachepolicy.WriteFuncs), may change the
// session's settings, or "" (cachepolicy.SettingsSetter), and which may
// change the catalog (cachepolicy.CatalogChanger). f describes calls and
// writes; the write functions it lacks are looked up.
func (pl *planner) writeSetter(ctx context.Context, db string, epoch uint64, calls, writes []string, f cachepolicy.Facts) (setter, changer string, err error) {
	missing := slices.DeleteFunc(cachepolicy.WriteFuncs(writes, f), func(fn string) bool {
		_, ok := f.Functions[fn]
		return ok
	})
	if len(missing) > 0 {
		more, _, err := pl.catalog.facts(ctx, db, epoch, &cachepolicy.Analysis{Functions: missing})
		if err != nil {
			return "", "", err
		}
		funcs := maps.Clone(f.Functions)
		maps.Copy(funcs, more.Functions)
		f.Functions = funcs
	}
	return cachepolicy.SettingsSetter(calls, writes, f), cachepolicy.CatalogChanger(calls, writes, f), nil
}

// writeSide returns what the catalog must be asked about a statement that
// is not a candidate: the functions it calls and the relations it writes.
func writeSide(calls, writes []string) *cachepolicy.Analysis {
	w := &cachepolicy.Analysis{Functions: calls}
	for _, name := range writes {
		w.Relations = append(w.Relations, cachepolicy.RelRef{Name: name})
	}
	return w
}

// withViews returns a copy of a that also reads the relations behind its
// views and calls the functions their definitions call, so the policy
// judges them (a view over a catalog, a temp table or now() is not
// cacheable) and the answer depends on them.
func withViews(a *cachepolicy.Analysis, f cachepolicy.Facts) *cachepolicy.Analysis {
	var rels []cachepolicy.RelRef
	for _, r := range a.Relations {
		for _, ri := range f.Relations[r.Name] {
			if ri.Kind != 'v' {
				// Base of a table is its family: dependencies only.
				continue
			}
			for _, b := range ri.Base {
				if _, ok := f.Relations[b]; ok {
					rels = append(rels, cachepolicy.RelRef{Name: b})
				}
			}
		}
	}
	var funcs []string
	for name := range f.Functions {
		if !slices.Contains(a.Functions, name) {
			funcs = append(funcs, name)
		}
	}
	if len(rels) == 0 && len(funcs) == 0 {
		return a
	}
	c := *a
	c.Relations = append(slices.Clone(a.Relations), rels...)
	c.Functions = append(slices.Clone(a.Functions), funcs...)
	return &c
}

// unstreamed returns why a cacheable decision must be refused when the
// change stream is what keeps answers current: a materialized view's
// REFRESH and writes to unlogged tables never reach it, so such answers
// are cached only under a rule that bounds them with a TTL.
func (pl *planner) unstreamed(d cachepolicy.Decision, f cachepolicy.Facts) string {
	if !pl.streamed || !d.Cacheable || d.Rule >= 0 && d.TTL > 0 {
		return ""
	}
	for _, t := range d.Tables {
		for _, ri := range f.Relations[t] {
			switch {
			case ri.Kind == 'm':
				return "materialized view " + ri.Name + ": REFRESH is not in the change stream (give it a TTL rule)"
			case ri.Unlogged:
				return "unlogged table " + ri.Name + ": its writes are not in the change stream (give it a TTL rule)"
			}
		}
	}
	return ""
}
