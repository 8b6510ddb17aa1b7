package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/sqlcache/sqlcache/proxy/internal/rawconn"
	"github.com/sqlcache/sqlcache/wire/pgwire"
)

// errHandled means the connection's purpose was served or refused and the
// client already has whatever answer it gets; the caller only closes.
var errHandled = errors.New("handled")

// handle runs one client connection from accept to close.
func (p *Proxy) handle(conn net.Conn) {
	start := time.Now()
	conn = rawconn.Wrap(conn)
	s := newSession(p, conn)
	p.metrics.clientsTotal.Inc()
	p.metrics.clientsCurrent.Inc()
	defer p.metrics.clientsCurrent.Dec()
	defer conn.Close()
	if !p.addSession(s) {
		return
	}
	defer p.removeSession(s)

	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.StartupTimeout)
	err := s.handshake(ctx)
	cancel()
	if err != nil {
		s.closeBackend()
		if !errors.Is(err, errHandled) && !isDisconnect(err) {
			s.log.Info("handshake failed", "err", err)
		}
		return
	}
	s.log.Info("session start", "user", s.params["user"], "database", s.params["database"], "application_name", s.params["application_name"])
	err = s.run()
	attrs := []any{"duration", time.Since(start).Round(time.Microsecond)}
	if err != nil && !isDisconnect(err) {
		attrs = append(attrs, "err", err)
	}
	s.log.Info("session end", attrs...)
}

// handshake negotiates encryption with the client, reads its
// StartupMessage, connects to the backend and relays authentication up to
// the first ReadyForQuery.
func (s *session) handshake(ctx context.Context) error {
	if dl, ok := ctx.Deadline(); ok {
		s.client.SetDeadline(dl)
		defer s.client.SetDeadline(time.Time{})
	}
	st, err := s.readStartup()
	if err != nil {
		return err
	}
	s.params = st.Params
	if err := s.connectBackend(ctx, st.Raw); err != nil {
		return err
	}
	return s.relayAuth()
}

// readStartup answers SSLRequest and GSSENCRequest until a StartupMessage
// or CancelRequest arrives.
func (s *session) readStartup() (pgwire.Startup, error) {
	p := s.p
	var sslDone, gssDone bool
	for {
		pkt, err := s.cr.ReadStartup(pgwire.MaxStartupPacket)
		if err != nil {
			var tooLarge *pgwire.TooLargeError
			var badLen *pgwire.InvalidLengthError
			if errors.As(err, &tooLarge) || errors.As(err, &badLen) {
				p.metrics.clientsRejected.WithLabelValues("bad_startup").Inc()
				s.sendFatal(codeProtocolViolation, "invalid length of startup packet")
				return pgwire.Startup{}, fmt.Errorf("startup packet: %w", err)
			}
			if isTimeout(err) {
				p.metrics.clientsRejected.WithLabelValues("startup_timeout").Inc()
				return pgwire.Startup{}, fmt.Errorf("no startup packet within %v", p.cfg.StartupTimeout)
			}
			return pgwire.Startup{}, err
		}
		st, err := pgwire.ParseStartup(pkt)
		if err != nil {
			p.metrics.clientsRejected.WithLabelValues("bad_startup").Inc()
			code := codeProtocolViolation
			if errors.Is(err, pgwire.ErrUnsupportedProtocol) {
				code = codeFeatureUnsupported
			}
			s.sendFatal(code, err.Error())
			return pgwire.Startup{}, err
		}
		switch st.Kind {
		case pgwire.StartupMessage:
			// The packet aliases the reader's buffer; keep a copy for
			// the backend.
			st.Raw = append([]byte(nil), st.Raw...)
			return st, nil
		case pgwire.CancelRequest:
			p.forwardCancel(st)
			return pgwire.Startup{}, errHandled
		case pgwire.SSLRequest, pgwire.GSSENCRequest:
			if sslDone || (st.Kind == pgwire.GSSENCRequest && gssDone) {
				s.sendFatal(codeProtocolViolation, "unsupported frontend protocol: duplicate "+st.Kind.String())
				return pgwire.Startup{}, errHandled
			}
			// Bytes after the request and before our answer were not
			// encrypted and may come from a man in the middle
			// (CVE-2021-23214): refuse, as PostgreSQL does.
			if s.cr.Buffered() > 0 {
				p.metrics.clientsRejected.WithLabelValues("data_after_ssl_request").Inc()
				s.sendFatal(codeProtocolViolation, "received unencrypted data after SSL request")
				return pgwire.Startup{}, errHandled
			}
			if st.Kind == pgwire.GSSENCRequest {
				gssDone = true
				if _, err := s.client.Write([]byte{'N'}); err != nil {
					return pgwire.Startup{}, err
				}
				continue
			}
			sslDone = true
			if err := s.startClientTLS(); err != nil {
				return pgwire.Startup{}, err
			}
		}
	}
}

// startClientTLS answers an SSLRequest and, when TLS is configured,
// replaces the client connection with the TLS one.
func (s *session) startClientTLS() error {
	if s.p.cfg.TLS == nil {
		_, err := s.client.Write([]byte{'N'})
		return err
	}
	if _, err := s.client.Write([]byte{'S'}); err != nil {
		return err
	}
	tc := tls.Server(s.client, s.p.cfg.TLS)
	if err := tc.Handshake(); err != nil {
		s.p.metrics.clientsRejected.WithLabelValues("tls_handshake").Inc()
		return fmt.Errorf("client TLS handshake: %w", err)
	}
	s.mu.Lock()
	s.client = tc
	s.mu.Unlock()
	s.cr = pgwire.NewReader(tc, s.p.cfg.MaxMessageBytes)
	s.cw.Reset(tc)
	return nil
}

// connectBackend dials the backend and sends it the client's
// StartupMessage unchanged.
func (s *session) connectBackend(ctx context.Context, startup []byte) error {
	conn, err := s.p.dialBackend(ctx)
	if err != nil {
		s.p.metrics.backendErrors.Inc()
		s.log.Warn("backend connect", "backend", s.p.cfg.Backend, "err", err)
		s.sendFatal(codeCannotConnect, fmt.Sprintf("sqlcache: could not connect to the PostgreSQL backend at %s: %v", s.p.cfg.Backend, err))
		return errHandled
	}
	s.mu.Lock()
	s.backend = conn
	s.mu.Unlock()
	s.br = pgwire.NewReader(conn, 0)
	s.bw = bufio.NewWriterSize(conn, writeBufferSize)
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	_, err = conn.Write(startup)
	return err
}

// relayAuth relays the authentication exchange unchanged, except that
// SCRAM-SHA-256-PLUS is withdrawn from the offer: channel binding ties the
// client's proof to the TLS connection it sees, which is not the one the
// backend sees, so it cannot survive a proxy.
func (s *session) relayAuth() error {
	defer s.backend.SetDeadline(time.Time{})
	for {
		msg, err := s.br.Next()
		if err != nil {
			return s.backendLost(err)
		}
		switch msg.Type {
		case pgwire.MsgAuthentication:
			code, ok := pgwire.AuthCode(msg.Body)
			if ok && code == pgwire.AuthSASL {
				if err := s.writeSASLOffer(msg); err != nil {
					return err
				}
			} else if err := s.toClient(msg); err != nil {
				return err
			}
			if ok && pgwire.AuthNeedsResponse(code) {
				if err := s.relayClientAuthResponse(); err != nil {
					return err
				}
			}
			continue
		case pgwire.MsgBackendKeyData:
			if !msg.Streamed() {
				s.p.registerCancelKey(s, string(msg.Body))
			}
		case pgwire.MsgParameterStatus:
			if name, value, err := pgwire.ParameterStatus(msg.Body); err == nil {
				s.reported = append(s.reported, [2]string{string(name), string(value)})
				s.noteReported(name, value)
			}
		case pgwire.MsgReadyForQuery:
			st, _ := pgwire.ReadyStatus(msg.Body)
			s.mu.Lock()
			s.txStatus = st
			s.lastReady = time.Now()
			s.mu.Unlock()
			if err := s.toClient(msg); err != nil {
				return err
			}
			return s.flushClient()
		case pgwire.MsgErrorResponse:
			if err := s.toClient(msg); err != nil {
				return err
			}
			if err := s.flushClient(); err != nil {
				return err
			}
			if !msg.Streamed() && pgwire.IsFatal(msg.Body) {
				return errHandled
			}
			continue
		}
		if err := s.toClient(msg); err != nil {
			return err
		}
	}
}

func (s *session) writeSASLOffer(msg pgwire.Message) error {
	if msg.Streamed() {
		return s.toClient(msg)
	}
	body, stripped, err := pgwire.StripSASLMechanism(msg.Body, "SCRAM-SHA-256-PLUS")
	if err != nil {
		s.sendFatal(codeProtocolViolation, "sqlcache: malformed AuthenticationSASL from backend")
		return fmt.Errorf("AuthenticationSASL: %w", err)
	}
	if !stripped {
		return s.toClient(msg)
	}
	s.log.Debug("withdrew SCRAM-SHA-256-PLUS from the backend's SASL offer")
	var hdr [5]byte
	hdr[0] = pgwire.MsgAuthentication
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(body)+4))
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.cw.Write(hdr[:])
	_, err = s.cw.Write(body)
	return err
}

// relayClientAuthResponse flushes the pending request to the client and
// relays its one answer to the backend.
func (s *session) relayClientAuthResponse() error {
	if err := s.flushClient(); err != nil {
		return err
	}
	msg, err := s.cr.Next()
	if err != nil {
		if isTimeout(err) {
			s.p.metrics.clientsRejected.WithLabelValues("startup_timeout").Inc()
			return fmt.Errorf("no authentication response within %v", s.p.cfg.StartupTimeout)
		}
		return s.clientReadFailed(err)
	}
	if err := s.relay(s.bw, s.cr, msg); err != nil {
		return err
	}
	return s.bw.Flush()
}

// dialBackend opens a TCP connection to the backend and negotiates TLS as
// the backend TLS mode says.
func (p *Proxy) dialBackend(ctx context.Context) (net.Conn, error) {
	d := net.Dialer{Timeout: p.cfg.DialTimeout, KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", p.cfg.Backend)
	if err != nil {
		return nil, err
	}
	conn = rawconn.Wrap(conn)
	if p.cfg.BackendTLSMode == BackendTLSDisable {
		return conn, nil
	}
	tc, err := p.negotiateBackendTLS(ctx, conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return tc, nil
}

func (p *Proxy) negotiateBackendTLS(ctx context.Context, conn net.Conn) (net.Conn, error) {
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
		defer conn.SetDeadline(time.Time{})
	}
	var req [8]byte
	binary.BigEndian.PutUint32(req[0:], 8)
	binary.BigEndian.PutUint32(req[4:], pgwire.CodeSSLRequest)
	if _, err := conn.Write(req[:]); err != nil {
		return nil, fmt.Errorf("SSLRequest: %w", err)
	}
	var answer [1]byte
	if _, err := io.ReadFull(conn, answer[:]); err != nil {
		return nil, fmt.Errorf("SSLRequest: %w", err)
	}
	switch answer[0] {
	case 'S':
		tc := tls.Client(conn, p.backendTLSConfig())
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, fmt.Errorf("backend TLS handshake (postgres.backend_tls.mode=%s): %w", p.cfg.BackendTLSMode, err)
		}
		return tc, nil
	case 'N':
		if p.cfg.BackendTLSMode == BackendTLSPrefer {
			return conn, nil
		}
		return nil, fmt.Errorf("backend does not accept TLS, but postgres.backend_tls.mode is %s", p.cfg.BackendTLSMode)
	}
	return nil, fmt.Errorf("unexpected answer %q to SSLRequest", answer[0])
}

// backendTLSConfig returns the TLS client configuration for the backend,
// following libpq: prefer and require encrypt without checking the
// certificate unless a CA is given (then require checks the chain, like
// verify-ca); verify-full checks the chain and the host name.
func (p *Proxy) backendTLSConfig() *tls.Config {
	p.tlsOnce.Do(func() {
		host, _, _ := net.SplitHostPort(p.cfg.Backend)
		c := &tls.Config{MinVersion: tls.VersionTLS12}
		if p.cfg.BackendTLS != nil {
			c = p.cfg.BackendTLS.Clone()
		}
		if c.ServerName == "" {
			c.ServerName = host
		}
		switch {
		case p.cfg.BackendTLSMode == BackendTLSVerifyFull:
		case p.cfg.BackendTLSMode == BackendTLSRequire && c.RootCAs != nil:
			roots := c.RootCAs
			c.InsecureSkipVerify = true
			c.VerifyConnection = func(cs tls.ConnectionState) error {
				return verifyChain(cs, roots)
			}
		default:
			c.InsecureSkipVerify = true
		}
		p.backendTLS = c
	})
	return p.backendTLS
}

func verifyChain(cs tls.ConnectionState, roots *x509.CertPool) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("backend sent no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
	return err
}

// forwardCancel passes a CancelRequest to the backend session it names. A
// key that no session of this proxy holds is dropped, as PostgreSQL drops
// unknown keys, so the proxy cannot be used to spray cancels.
func (p *Proxy) forwardCancel(st pgwire.Startup) {
	key := string(st.Raw[8:])
	s := p.lookupCancelKey(key)
	if s == nil {
		p.metrics.cancels.WithLabelValues("unknown").Inc()
		p.log.Debug("cancel request for unknown key", "pid", st.Cancel.ProcessID)
		return
	}
	// A session waiting for another's fill has nothing running on its
	// backend: the wait ends with the error PostgreSQL would give.
	select {
	case s.cancelWait <- struct{}{}:
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := p.dialBackend(ctx)
	if err != nil {
		p.metrics.backendErrors.Inc()
		p.metrics.cancels.WithLabelValues("failed").Inc()
		p.log.Warn("cancel: backend connect", "err", err)
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(st.Raw); err != nil {
		p.metrics.cancels.WithLabelValues("failed").Inc()
		p.log.Warn("cancel: send", "err", err)
		return
	}
	// The backend closes the connection once it has signalled the
	// session; waiting for that keeps the cancel ordered before any
	// reply the client sees next, as with a direct connection.
	io.Copy(io.Discard, conn)
	p.metrics.cancels.WithLabelValues("forwarded").Inc()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isDisconnect reports an error that only means the peer went away, which
// is not worth a log line.
func isDisconnect(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, errClientTerminated)
}
