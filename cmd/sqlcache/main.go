// Command sqlcache is a caching reverse proxy for PostgreSQL.
//
//	sqlcache serve --config sqlcache.yaml
//	sqlcache check --config sqlcache.yaml
//	sqlcache version
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/sqlcache/sqlcache/proxy"
)

// version is set by the Makefile with -ldflags "-X main.version=…".
var version = ""

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// exitError carries an exit code out of a cobra command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func run(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "sqlcache: %v\n", err)
	var ce *configError
	var ee *exitError
	switch {
	case errors.As(err, &ce):
		return 2
	case errors.As(err, &ee):
		return ee.code
	}
	return 2 // usage errors from cobra
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "sqlcache",
		Short: "A caching reverse proxy for PostgreSQL",
		Long: `sqlcache speaks the PostgreSQL wire protocol: point an application's
connection string at it and it relays every session to the real server.

Configuration comes from a YAML file (--config), overridden by environment
variables (SQLCACHE_ + the key, upper case, dots as underscores, e.g.
SQLCACHE_POSTGRES_BACKEND), overridden by flags.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newServeCmd(stderr), newCheckCmd(stdout), newVersionCmd(stdout), newExplainCmd(stdout))
	return root
}

// configFlags binds the common flags of serve and check to viper keys.
func configFlags(cmd *cobra.Command, v *viper.Viper) *string {
	file := cmd.Flags().StringP("config", "c", "", "YAML configuration file (see config.example.yaml)")
	cmd.Flags().String("listen", "", "address for PostgreSQL clients (postgres.listen)")
	cmd.Flags().String("backend", "", "PostgreSQL server host:port (postgres.backend)")
	cmd.Flags().String("admin-listen", "", "address for /metrics, /healthz and /readyz; empty string disables (admin.listen)")
	cmd.Flags().String("log-level", "", "debug, info, warn or error (log.level)")
	for flag, key := range map[string]string{
		"listen": "postgres.listen", "backend": "postgres.backend",
		"admin-listen": "admin.listen", "log-level": "log.level",
	} {
		v.BindPFlag(key, cmd.Flags().Lookup(flag))
	}
	return file
}

func newServeCmd(stderr io.Writer) *cobra.Command {
	v := newViper()
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the proxy",
		Args:  cobra.NoArgs,
	}
	file := configFlags(cmd, v)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := loadConfig(v, *file)
		if err != nil {
			return err
		}
		return serve(cmd.Context(), cfg, stderr)
	}
	return cmd
}

func newLogger(cfg *config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serve runs the proxy and the admin server until SIGINT or SIGTERM, then
// shuts down gracefully within shutdown_timeout.
func serve(ctx context.Context, cfg *config, stderr io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	log := newLogger(cfg, stderr)
	cfg.Proxy.Logger = log
	p, err := proxy.New(cfg.Proxy)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	// From here on a signal stops sqlcache gracefully, the startup check
	// (up to 15 seconds against a backend that does not answer) included.
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := checkInvalidation(ctx, p, cfg, log); err != nil {
		return err
	}
	if ctx.Err() != nil {
		log.Info("stopped during the startup check, before listening")
		shutdown(p, nil, cfg, log)
		return nil
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("postgres.listen: %w", err)}
	}
	var admin *http.Server
	if cfg.AdminListen != "" {
		aln, err := net.Listen("tcp", cfg.AdminListen)
		if err != nil {
			ln.Close()
			return &exitError{code: 1, err: fmt.Errorf("admin.listen: %w", err)}
		}
		admin = &http.Server{Handler: p.AdminHandler(), ReadHeaderTimeout: 5 * time.Second}
		go admin.Serve(aln)
		log.Info("admin listening", "addr", aln.Addr().String())
	}

	served := make(chan error, 1)
	go func() { served <- p.Serve(ln) }()
	log.Info("sqlcache listening", "addr", ln.Addr().String(), "backend", cfg.Proxy.Backend, "version", versionString())

	select {
	case err := <-served:
		return &exitError{code: 1, err: err}
	case <-ctx.Done():
	}
	// A second signal kills the process the default way.
	stop()
	shutdown(p, admin, cfg, log)
	return nil
}

// shutdown stops p and the admin server, if any, within shutdown_timeout.
func shutdown(p *proxy.Proxy, admin *http.Server, cfg *config, log *slog.Logger) {
	log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := p.Shutdown(sctx); err != nil {
		log.Warn("shutdown timeout: closed sessions still in flight", "err", err)
	}
	if admin != nil {
		admin.Shutdown(sctx)
	}
	log.Info("stopped")
}

// checkInvalidation tries change streaming once at startup: a problem is
// an error with invalidation.postgres.startup_check: fail, else a warning
// (the database is then served without the cache until it is fixed).
func checkInvalidation(ctx context.Context, p *proxy.Proxy, cfg *config, log *slog.Logger) error {
	if !cfg.Proxy.Cache.Enabled || cfg.Proxy.Invalidation.Mode == proxy.InvalidationNone {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	err := p.CheckInvalidation(cctx)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		// Stopped by a signal, not a failed check: serve says so.
		return nil
	case cfg.StartupCheckFail:
		return &exitError{code: 1, err: fmt.Errorf("change stream (invalidation.postgres.startup_check is fail): %w", err)}
	}
	log.Warn("change stream cannot run yet; databases are served without the cache until it can", "err", err)
	return nil
}

func newCheckCmd(stdout io.Writer) *cobra.Command {
	v := newViper()
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Validate the configuration and try the backend",
		Long: `check validates the configuration the way serve would, then connects to
postgres.backend (negotiating TLS as postgres.backend_tls says) and, when
postgres.service_dsn is set, logs in with it. Exit status: 0 all good,
2 bad configuration, 1 backend unreachable.`,
		Args: cobra.NoArgs,
	}
	file := configFlags(cmd, v)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := loadConfig(v, *file)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, "configuration: ok")
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		p, err := proxy.New(cfg.Proxy)
		if err != nil {
			return &exitError{code: 2, err: err}
		}
		info, err := p.CheckBackend(ctx)
		if err != nil {
			return &exitError{code: 1, err: fmt.Errorf("backend %s: %w", cfg.Proxy.Backend, err)}
		}
		fmt.Fprintf(stdout, "backend %s: reachable (%s)\n", cfg.Proxy.Backend, info)
		if cfg.Proxy.ServiceDSN != "" {
			conn, err := pgconn.Connect(ctx, cfg.Proxy.ServiceDSN)
			if err != nil {
				return &exitError{code: 1, err: fmt.Errorf("postgres.service_dsn: %w", err)}
			}
			conn.Close(ctx)
			fmt.Fprintln(stdout, "postgres.service_dsn: login ok")
		}
		if cfg.Proxy.Cache.Enabled && cfg.Proxy.Invalidation.Mode == proxy.InvalidationLogical {
			if err := p.CheckInvalidation(ctx); err != nil {
				return &exitError{code: 1, err: fmt.Errorf("change stream: %w", err)}
			}
			fmt.Fprintln(stdout, "change stream: ok")
		}
		return nil
	}
	return cmd
}

func newVersionCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(*cobra.Command, []string) {
			fmt.Fprintf(stdout, "sqlcache %s (%s)\n", versionString(), runtime.Version())
		},
	}
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

func newExplainCmd(stdout io.Writer) *cobra.Command {
	v := newViper()
	cmd := &cobra.Command{
		Use:   "explain [flags] SQL",
		Short: "Ask a running sqlcache whether it would cache a statement, and why",
		Long: `explain asks the sqlcache serving the given configuration (through its
admin.listen address) how it would treat a statement: cacheable or not, the
reason, the tables its answer depends on, and its TTL.`,
		Args: cobra.ExactArgs(1),
	}
	file := configFlags(cmd, v)
	db := cmd.Flags().StringP("database", "d", "postgres", "database the statement runs in")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		cfg, err := loadConfig(v, *file)
		if err != nil {
			return err
		}
		if cfg.AdminListen == "" {
			return &exitError{code: 2, err: errors.New("admin.listen is empty: explain needs the admin API")}
		}
		u := url.URL{Scheme: "http", Host: cfg.AdminListen, Path: "/explain",
			RawQuery: url.Values{"sql": {args[0]}, "database": {*db}}.Encode()}
		client := http.Client{Timeout: 15 * time.Second}
		resp, err := client.Get(u.String())
		if err != nil {
			return &exitError{code: 1, err: fmt.Errorf("admin API at %s: %w", cfg.AdminListen, err)}
		}
		defer resp.Body.Close()
		var e proxy.Explanation
		if resp.StatusCode != http.StatusOK {
			body, _ := io.ReadAll(resp.Body)
			return &exitError{code: 1, err: fmt.Errorf("admin API: %s: %s", resp.Status, body)}
		}
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
			return &exitError{code: 1, err: fmt.Errorf("admin API: %w", err)}
		}
		yes := map[bool]string{true: "yes", false: "no"}[e.Cacheable]
		fmt.Fprintf(stdout, "cacheable: %s\nreason:    %s\ntables:    %s\n",
			yes, e.Reason, strings.Join(e.Tables, ", "))
		if e.TTL != "" {
			fmt.Fprintf(stdout, "ttl:       %s\n", e.TTL)
		}
		if len(e.Writes) > 0 {
			fmt.Fprintf(stdout, "writes:    %s\n", strings.Join(e.Writes, ", "))
		}
		if e.Row != "" {
			fmt.Fprintf(stdout, "row:       %s (invalidated by changes of that row only)\n", e.Row)
		}
		if e.OwnWriteWait != nil {
			next := "served at once (it changes only the tables it names)"
			if *e.OwnWriteWait {
				next = "waits for the change stream (triggers, rules or user functions may change more)"
			}
			fmt.Fprintf(stdout, "after it:  the session's next cache read %s\n", next)
		}
		if e.SettingsChangedBy != "" {
			fmt.Fprintf(stdout, "session:   %s may change the session's settings; after it sqlcache reads them back before the session uses the cache again\n", e.SettingsChangedBy)
		}
		return nil
	}
	return cmd
}
