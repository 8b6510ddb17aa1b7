// Package integration runs the sqlcache binary against real database
// servers started for each test.
//
// It is not a library: every file is a _test.go file and nothing imports it.
// The helpers here start processes and register their teardown with
// t.Cleanup; a missing server binary fails the test, naming the Debian package
// to install, because a skipped integration test proves nothing.
package integration

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	// Run the tests in a closure so that deferred teardown happens before
	// os.Exit, which skips deferred calls.
	raceExitQuickly()
	exitCode := func() int {
		defer removeSqlcacheBinary()
		defer removePGTemplate()
		return m.Run()
	}()
	os.Exit(exitCode)
}

// raceExitQuickly shortens the race detector's sleep before a -race
// binary exits (atexit_sleep_ms, 1 s by default) for the processes the
// tests start: a second per sqlcache stopped, in each of more than a
// hundred tests. By then sqlcache has logged "stopped" and its goroutines
// have ended; 50 ms still lets a straggler's race be reported.
func raceExitQuickly() {
	opts := os.Getenv("GORACE")
	if strings.Contains(opts, "atexit_sleep_ms") {
		return
	}
	os.Setenv("GORACE", strings.TrimSpace(opts+" atexit_sleep_ms=50"))
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
//
// Another process may take it before the caller binds it; that is rare enough
// to accept, and it lets servers that cannot report their port (postgres) and
// servers started again on the same port (restarts) use a port known in
// advance. The port is picked below the kernel's ephemeral range
// (ip_local_port_range), from which every outgoing connection of the tests
// (pgx, psql, pgbench, the servers' own) takes its local port: a port the
// kernel hands out for a listen on port 0 is one a client may take next,
// which made sqlcache's bind fail once in CI.
func FreePort(t testing.TB) int {
	t.Helper()
	lo, hi := 20000, 32768 // Linux's ephemeral range starts at 32768
	for range 100 {
		port := lo + rand.IntN(hi-lo)
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		ln.Close()
		return port
	}
	t.Fatalf("no free port in [%d, %d) after 100 tries", lo, hi)
	return 0
}

// freeAddr returns "127.0.0.1:N" for a port from FreePort.
func freeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}

// pgURL returns a postgres:// URL for addr. params are "key=value" pairs;
// sslmode=disable is added unless tls is set or params set sslmode.
func pgURL(addr, user, password, db string, tls bool, params []string) string {
	u := url.URL{Scheme: "postgres", Host: addr, Path: "/" + db, User: url.User(user)}
	if password != "" {
		u.User = url.UserPassword(user, password)
	}
	q := url.Values{}
	if !tls {
		q.Set("sslmode", "disable")
	}
	for _, kv := range params {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			panic(fmt.Sprintf("URL parameter %q is not key=value", kv))
		}
		q.Set(k, v)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// LookBinary returns the path of the executable name from $PATH, or fails the
// test naming the Debian package that provides it.
func LookBinary(t testing.TB, name, debianPackage string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found in $PATH: install the Debian package %s (apt-get install %s)", name, debianPackage, debianPackage)
	}
	return path
}

// ChownTo gives path to the OS user username, for files that a server running
// as that user must own (postgres insists on owning its TLS key).
func ChownTo(t testing.TB, path, username string) {
	t.Helper()
	cred := lookupCredential(t, username)
	if err := os.Chown(path, int(cred.Uid), int(cred.Gid)); err != nil {
		t.Fatalf("chown %s to %s: %v", path, username, err)
	}
}

// lookupCredential returns the uid and gid of the OS user username, for
// exec.Cmd.SysProcAttr.Credential.
func lookupCredential(t testing.TB, username string) *syscall.Credential {
	t.Helper()
	u, err := user.Lookup(username)
	if err != nil {
		t.Fatalf("looking up OS user %q: %v (the Debian package postgresql creates it; or run the tests as a non-root user)", username, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		t.Fatalf("OS user %q: bad uid %q", username, u.Uid)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		t.Fatalf("OS user %q: bad gid %q", username, u.Gid)
	}
	// Groups drops root's supplementary groups from the child.
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{uint32(gid)}}
}

// procAttr returns the process attributes for servers the tests start: the
// kernel kills them if the test binary dies, so a crashed or interrupted test
// run leaves no servers behind. cred may be nil to keep the current user.
//
// Pdeathsig fires when the OS thread that started the child exits, not the
// process; the Go runtime only ends threads locked with runtime.LockOSThread,
// which the tests don't use.
func procAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: cred}
}

// waitDone waits up to timeout for done to be closed and reports whether it
// was.
func waitDone(done <-chan struct{}, timeout time.Duration) bool {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-done:
		return true
	case <-timer.C:
		return false
	}
}

// errExited is returned by pollUntil when the process being waited for exits.
var errExited = errors.New("process exited")

// pollUntil calls ready every 50ms until it returns nil, the channel exited is
// closed, or timeout passes. It returns nil, errExited, or ready's last error.
func pollUntil(timeout time.Duration, exited <-chan struct{}, ready func() error) error {
	deadline := time.Now().Add(timeout)
	ticker := time.NewTicker(50 * time.Millisecond)
	defer ticker.Stop()
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %w", timeout, err)
		}
		select {
		case <-exited:
			return errExited
		case <-ticker.C:
		}
	}
}

// exitCodeOf returns the exit code from the error of exec.Cmd.Wait or Run:
// 0 for nil, the process's code for an *exec.ExitError (-1 if a signal killed
// it), and ok=false for errors that are not about the exit status.
func exitCodeOf(err error) (code int, ok bool) {
	if err == nil {
		return 0, true
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return exitErr.ExitCode(), true
	}
	return -1, false
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
