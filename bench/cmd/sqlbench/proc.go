package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// pgOSUser runs PostgreSQL and the poolers when we are root: PostgreSQL
// refuses root and PgBouncer and pgpool-II are better off without it.
const pgOSUser = "postgres"

// runAs is the OS user a server runs as: nil for ourselves.
type runAs = *syscall.Credential

// serverUser returns the credential servers run as: pgOSUser when we are
// root, else nil (ourselves).
func serverUser() (runAs, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(pgOSUser)
	if err != nil {
		return nil, fmt.Errorf("looking up OS user %s (created by the postgresql package): %w", pgOSUser, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("uid of %s: %w", pgOSUser, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("gid of %s: %w", pgOSUser, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// chownTo gives path to cred's user; a no-op for nil cred.
func chownTo(path string, cred runAs) error {
	if cred == nil {
		return nil
	}
	if err := os.Chown(path, int(cred.Uid), int(cred.Gid)); err != nil {
		return fmt.Errorf("chown %s: %w", path, err)
	}
	return nil
}

// mkdirFor creates dir (mode 0755) owned by cred's user.
func mkdirFor(dir string, cred runAs) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	return chownTo(dir, cred)
}

// proc is a long-running server we started, in its own process group so
// that a Ctrl-C on the terminal reaches us, and we stop it in order.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	stopSig syscall.Signal // asks for a fast shutdown
	done    chan struct{}  // closed when cmd has exited
	err     error          // from cmd.Wait, read after done
}

// startProc starts a server as cred's user in dir, its output appended to
// logPath.
func startProc(name string, cred runAs, dir, logPath string, stopSig syscall.Signal, path string, args ...string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	defer logf.Close()
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, stopSig: stopSig, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// pid is the process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop asks the server to shut down, then kills its process group if it
// has not exited within timeout.
func (p *proc) stop(timeout time.Duration) error {
	if p.exited() {
		return nil
	}
	_ = syscall.Kill(p.pid(), p.stopSig)
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	select {
	case <-p.done:
		return fmt.Errorf("%s did not stop within %s: killed", p.name, timeout)
	case <-time.After(5 * time.Second):
		return fmt.Errorf("%s (pid %d) survived SIGKILL", p.name, p.pid())
	}
}

// logTail returns the last n lines of the process's log.
func (p *proc) logTail(n int) string {
	return fileTail(p.logPath, n)
}

// fileTail returns the last n lines of a file, or a note why it cannot.
func fileTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freePorts returns n distinct TCP ports on 127.0.0.1 that nothing listens
// on now, holding them all open until every one is chosen. They come from
// below the kernel's ephemeral range (ip_local_port_range), where
// pgbench's connections take their local ports, so that no client takes
// one before its server binds it.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	lo, hi := 20000, 32768 // Linux's ephemeral range starts at 32768
	for tries := 0; len(ports) < n; tries++ {
		if tries == 100*n {
			return nil, fmt.Errorf("finding a free port: none free in [%d, %d) after %d tries", lo, hi, tries)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(lo+rand.IntN(hi-lo))))
		if err != nil {
			continue
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// errExited means a server ended while we waited for it.
var errExited = errors.New("exited")

// lastLine returns the last non-empty line of s, for short error reasons.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
