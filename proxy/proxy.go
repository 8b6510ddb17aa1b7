// Package proxy is sqlcache's PostgreSQL front end: it accepts client
// connections, opens one backend connection for each, relays the protocol
// between them message by message, and keeps the per-session state (statement
// boundaries, transaction status, cancel keys) that caching builds on.
//
// It does not read configuration files or parse SQL; cmd/sqlcache fills a
// Config, and SQL decisions belong to package cachepolicy.
package proxy

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sqlcache/sqlcache/proxy/internal/cache"
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("proxy: server closed")

// Proxy relays PostgreSQL clients to a backend. Its methods are safe for
// concurrent use.
type Proxy struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	nextID  atomic.Uint64

	tlsOnce    sync.Once
	backendTLS *tls.Config // set by tlsOnce

	store         *cache.Store
	catalog       *catalog
	planner       *planner
	cacheEnabled  bool
	maxEntryBytes int
	// captures bounds the answers being captured for the cache: half of
	// cache.max_bytes, at least max_entry_bytes.
	captures   captureBudget
	backendKey []byte   // the backend address, in every key
	streams    *streams // nil when invalidation mode is none
	maxLag     time.Duration

	closeOnce sync.Once
	closeCh   chan struct{} // closed by Shutdown/Close: stops background work
	bg        sync.WaitGroup

	// loginGen numbers the changes of the settings sessions log in with
	// that sqlcache has seen (loginKey).
	loginGen atomic.Uint64

	mu        sync.Mutex // protects the fields below
	listeners map[net.Listener]struct{}
	sessions  map[*session]struct{}
	cancelKey map[string]*session // BackendKeyData (pid+secret) → session
	// dbSessions counts the sessions using each database's cache
	// (dbJoin); dbRelease is how long one with none keeps its stream.
	dbSessions map[string]int
	dbRelease  time.Duration
	closing    bool
	// loginReadStarted: the first read of the settings sessions log in
	// with has started (Serve).
	loginReadStarted bool

	wg sync.WaitGroup // one per connection handler
}

// New returns a Proxy for cfg.
func New(cfg Config) (*Proxy, error) {
	if cfg.Backend == "" {
		return nil, errors.New("proxy: Config.Backend is empty")
	}
	if _, _, err := net.SplitHostPort(cfg.Backend); err != nil {
		return nil, fmt.Errorf("proxy: Config.Backend: %w", err)
	}
	c := cfg.withDefaults()
	if _, err := ParseBackendTLSMode(string(c.BackendTLSMode)); err != nil {
		return nil, fmt.Errorf("proxy: Config.BackendTLSMode: %w", err)
	}
	p := &Proxy{
		cfg:           c,
		log:           c.Logger,
		listeners:     make(map[net.Listener]struct{}),
		sessions:      make(map[*session]struct{}),
		cancelKey:     make(map[string]*session),
		dbSessions:    make(map[string]int),
		dbRelease:     cmp.Or(c.Invalidation.ReleaseIdle, dbIdleRelease),
		cacheEnabled:  c.Cache.Enabled,
		maxEntryBytes: int(c.Cache.MaxEntryBytes),
		backendKey:    []byte(c.Backend),
		closeCh:       make(chan struct{}),
	}
	p.captures.max = max(int64(c.Cache.MaxBytes)/2, int64(c.Cache.MaxEntryBytes))
	p.metrics = newMetrics()
	p.store = cache.New(cache.Config{
		MaxBytes:      c.Cache.MaxBytes,
		MaxEntryBytes: c.Cache.MaxEntryBytes,
		OnEvict:       func(reason string) { p.metrics.evictions.WithLabelValues(reason).Inc() },
	})
	p.metrics.registerStore(p.store)
	p.catalog = newCatalog(c.ServiceDSN, c.Logger)
	p.catalog.accessChanged = p.accessChanged
	p.catalog.relationsChanged = p.relationsChanged
	p.catalog.loginDefaultsSeen = p.loginDefaultsSeen
	p.catalog.checkBegins = func(db string) uint64 { return p.planner.checkSeq(db).Add(1) }
	p.catalog.accessChecked = func(failed bool) {
		result := "ok"
		if failed {
			result = "failed"
		}
		p.metrics.accessChecks.WithLabelValues(result).Inc()
	}
	p.planner = newPlanner(p.catalog, c.Cache.Rules, c.Cache.DefaultTTL)
	if c.Cache.Enabled && c.ServiceDSN == "" {
		p.log.Warn("cache.enabled is true but postgres.service_dsn is empty: sqlcache cannot look up the catalog, so nothing will be cached")
	}
	switch c.Invalidation.Mode {
	case InvalidationLogical:
		p.streams = newStreams(p, c.Invalidation)
		p.planner.streamed = true
		p.maxLag = c.Invalidation.MaxLag
		p.metrics.reg.MustRegister(newStreamCollector(p.streams))
	case InvalidationNone:
		if c.Cache.Enabled {
			p.log.Warn("invalidation.postgres.mode is none: writes that do not pass through this sqlcache (other services, other proxies, triggers, cascades) are NOT seen; cached answers can be stale for up to their TTL")
		}
	default:
		return nil, fmt.Errorf("proxy: Config.Invalidation.Mode: unknown mode %q (want logical or none)", c.Invalidation.Mode)
	}
	p.bg.Add(1)
	go p.refreshPlans(c.Cache.CatalogCheck)
	return p, nil
}

// refreshPlans makes cached decisions stale every interval, so that schema
// changes made behind sqlcache's back (a view redefined, a function's
// volatility changed) are seen within that time, and checks each
// database's access fingerprint (checkAccess), so that privileges, row
// security, roles and role settings changed behind its back drop the
// answers cached under the old ones within that time too.
func (p *Proxy) refreshPlans(every time.Duration) {
	defer p.bg.Done()
	// A check in progress ends with Close; so does this goroutine.
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-p.closeCh
		cancel()
	}()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.closeCh:
			return
		case <-t.C:
			// The check first: while it holds a database's lookups,
			// statements still find their plans and do not wait for it.
			p.catalog.checkAllAccess(ctx)
			p.planner.forgetAll()
		}
	}
}

// accessChanged drops database db's cached answers after its access
// fingerprint changed or could not be checked.
func (p *Proxy) accessChanged(db, why string, failed bool) {
	n := p.store.InvalidateDB(db)
	p.planner.forget(db)
	p.metrics.invalidations.WithLabelValues("catalog").Add(float64(n))
	p.metrics.invalidationEvents.WithLabelValues("catalog").Inc()
	level := slog.LevelInfo
	if failed {
		level = slog.LevelWarn
	}
	p.log.Log(context.Background(), level, "dropped the database's cached answers: who may read what may have changed", "database", db, "entries", n, "why", why)
}

// loginDefaultsChanged is called when a statement through sqlcache changed
// the settings sessions log in with (ALTER ROLE … SET): sessions that log
// in from now on do not share answers with those before.
func (p *Proxy) loginDefaultsChanged() {
	p.loginGen.Add(1)
}

// loginDefaultsSeen is called when the catalog finds that the settings
// sessions log in with changed since it read them at since. Sessions that
// logged in after since may have either, under the key of those before:
// they stop using the cache.
func (p *Proxy) loginDefaultsSeen(since time.Time) {
	p.loginGen.Add(1)
	p.mu.Lock()
	sessions := slices.Collect(maps.Keys(p.sessions))
	p.mu.Unlock()
	n := 0
	for _, s := range sessions {
		s.mu.Lock()
		switch {
		case s.state == nil:
			// Still logging in: its backend may have read either.
			s.loginSuspect = true
			n++
		case s.loginAt.After(since) && !s.state.loginUnknown:
			s.state.loginUnknown = true
			n++
		}
		s.mu.Unlock()
	}
	p.log.Info("the settings sessions log in with changed on the database; sessions that logged in since the last check stop using the cache", "sessions", n)
}

// relationsChanged drops database db's cached answers that read a relation
// of one of names, after another relation of that name was made (or
// dropped) or the relation was rewritten, and has every decision made
// again.
func (p *Proxy) relationsChanged(db string, names []string, window uint64) {
	n := 0
	for _, name := range names {
		n += p.store.InvalidateTable(db, name)
	}
	p.planner.forgetNames(db, names, window)
	p.metrics.invalidations.WithLabelValues("catalog").Add(float64(n))
	p.metrics.invalidationEvents.WithLabelValues("catalog").Inc()
	p.log.Info("dropped the cached answers of relations rewritten, or whose names another relation now also has", "database", db, "names", names, "entries", n)
}

// stopBackground ends background work and the catalog connections.
func (p *Proxy) stopBackground() {
	p.closeOnce.Do(func() {
		close(p.closeCh)
		p.bg.Wait()
		p.catalog.close()
		if p.streams != nil {
			p.streams.close()
		}
	})
}

// Serve accepts connections on ln until Shutdown or Close, and returns
// ErrServerClosed then. ln is closed when Serve returns.
func (p *Proxy) Serve(ln net.Listener) error {
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	p.listeners[ln] = struct{}{}
	// The first read of the settings sessions log in with; added to bg
	// under mu, before closing can be set and bg waited for.
	loginRead := p.cacheEnabled && p.cfg.ServiceDSN != "" && !p.loginReadStarted
	if loginRead {
		p.loginReadStarted = true
		p.bg.Add(1)
	}
	p.mu.Unlock()
	if loginRead {
		go func() {
			defer p.bg.Done()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() {
				select {
				case <-p.closeCh:
					cancel()
				case <-ctx.Done():
				}
			}()
			p.catalog.readLoginDefaults(ctx)
		}()
	}
	if p.streams != nil && p.cacheEnabled && p.cfg.ServiceDSN != "" {
		// Start following the service login's own database now, so it is
		// fresh before the first client arrives.
		if cfg, err := pgconn.ParseConfig(p.cfg.ServiceDSN); err == nil {
			p.streams.get(cfg.Database)
		}
	}
	defer func() {
		p.mu.Lock()
		delete(p.listeners, ln)
		p.mu.Unlock()
		ln.Close()
	}()

	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if p.isClosing() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, errTooManyFiles) {
				// Out of file descriptors and the like: back off as
				// net/http does instead of spinning.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				p.log.Warn("accept", "err", err, "retry_in", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("proxy: accept: %w", err)
		}
		backoff = 0
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.handle(conn)
		}()
	}
}

func (p *Proxy) isClosing() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closing
}

// Shutdown stops accepting connections, closes idle sessions at once, lets
// the others finish their current query or transaction, and when ctx ends
// closes whatever is left. It returns ctx.Err() if sessions had to be cut.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	p.closing = true
	for ln := range p.listeners {
		ln.Close()
	}
	sessions := make([]*session, 0, len(p.sessions))
	for s := range p.sessions {
		sessions = append(sessions, s)
	}
	p.mu.Unlock()

	// In parallel: a session whose client stopped reading takes up to a
	// second (sendFatal's deadline) to be told.
	var drains sync.WaitGroup
	for _, s := range sessions {
		drains.Go(s.drain)
	}
	drains.Wait()
	done := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(done)
	}()
	defer p.stopBackground()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	p.closeAll()
	<-done
	return ctx.Err()
}

// Close closes the listeners and every session at once.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closing = true
	for ln := range p.listeners {
		ln.Close()
	}
	p.mu.Unlock()
	p.closeAll()
	p.wg.Wait()
	p.stopBackground()
	return nil
}

func (p *Proxy) closeAll() {
	p.mu.Lock()
	sessions := make([]*session, 0, len(p.sessions))
	for s := range p.sessions {
		sessions = append(sessions, s)
	}
	p.mu.Unlock()
	var terminations sync.WaitGroup
	for _, s := range sessions {
		terminations.Go(func() { s.terminate("57P01", "terminating connection due to administrator command") })
	}
	terminations.Wait()
}

// addSession registers s unless the proxy is shutting down.
func (p *Proxy) addSession(s *session) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing {
		return false
	}
	p.sessions[s] = struct{}{}
	return true
}

func (p *Proxy) removeSession(s *session) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.sessions, s)
	if s.cancelKey != "" && p.cancelKey[s.cancelKey] == s {
		delete(p.cancelKey, s.cancelKey)
	}
}

func (p *Proxy) registerCancelKey(s *session, key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s.cancelKey = key
	p.cancelKey[key] = s
}

func (p *Proxy) lookupCancelKey(key string) *session {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cancelKey[key]
}

// Ready reports whether the proxy accepts connections and can reach the
// backend.
func (p *Proxy) Ready(ctx context.Context) error {
	if p.isClosing() {
		return errors.New("shutting down")
	}
	d := net.Dialer{Timeout: time.Second}
	c, err := d.DialContext(ctx, "tcp", p.cfg.Backend)
	if err != nil {
		return fmt.Errorf("backend %s: %w", p.cfg.Backend, err)
	}
	c.Close()
	return nil
}

// CheckBackend connects to the backend as sessions do, TLS negotiation
// included, and describes the connection.
func (p *Proxy) CheckBackend(ctx context.Context) (string, error) {
	conn, err := p.dialBackend(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if tc, ok := conn.(*tls.Conn); ok {
		return tls.VersionName(tc.ConnectionState().Version), nil
	}
	return "no TLS", nil
}
