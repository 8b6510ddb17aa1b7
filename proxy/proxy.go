// Package proxy is sqlcache's PostgreSQL front end: it accepts client
// connections, opens one backend connection for each, relays the protocol
// between them message by message, and keeps the per-session state (statement
// boundaries, transaction status, cancel keys) that caching builds on.
//
// It does not read configuration files or parse SQL; cmd/sqlcache fills a
// Config, and SQL decisions belong to package cachepolicy.
package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
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

	mu        sync.Mutex // protects the fields below
	listeners map[net.Listener]struct{}
	sessions  map[*session]struct{}
	cancelKey map[string]*session // BackendKeyData (pid+secret) → session
	closing   bool

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
	return &Proxy{
		cfg:       c,
		log:       c.Logger,
		metrics:   newMetrics(),
		listeners: make(map[net.Listener]struct{}),
		sessions:  make(map[*session]struct{}),
		cancelKey: make(map[string]*session),
	}, nil
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
	p.mu.Unlock()
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

	for _, s := range sessions {
		s.drain()
	}
	done := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(done)
	}()
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
	return nil
}

func (p *Proxy) closeAll() {
	p.mu.Lock()
	sessions := make([]*session, 0, len(p.sessions))
	for s := range p.sessions {
		sessions = append(sessions, s)
	}
	p.mu.Unlock()
	for _, s := range sessions {
		s.terminate("57P01", "terminating connection due to administrator command")
	}
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

// AdminHandler serves /metrics (Prometheus), /healthz and /readyz.
func (p *Proxy) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(p.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := p.Ready(r.Context()); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
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
