// Package rawconn makes reads and writes on TCP connections cheaper for a
// relay that does little else: Wrap returns a net.Conn whose Read and
// Write call read(2) and write(2) straight from the runtime poller's
// callbacks (syscall.RawConn) as raw system calls.
//
// An ordinary net.Conn enters and leaves the scheduler's syscall state
// around every read and write. On a relay making four of them per round
// trip, that bookkeeping, and the monitor thread that wakes to retake
// processors from threads "in a syscall", cost about a sixth of the CPU
// the relay spent (measured with a bare relay under pgbench -S). A
// non-blocking socket's read or write never sleeps in the kernel, so
// nothing is gained by telling the scheduler about it.
//
// It is not a general replacement for net.Conn: only *net.TCPConn is
// wrapped (anything else, such as a TLS conn, is returned unchanged), and
// only on Linux. Deadlines, Close and the rest are the TCPConn's own;
// errors have the same shapes as net's (io.EOF at end of stream, a
// *net.OpError wrapping the syscall error, net.ErrClosed after Close,
// os.ErrDeadlineExceeded after a deadline).
package rawconn

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// Conn is a TCP connection with raw-syscall Read and Write. Like any
// net.Conn, its methods may be called from several goroutines.
type Conn struct {
	*net.TCPConn
	rc syscall.RawConn

	// The callbacks handed to rc are method values made once, so that a
	// Read or Write allocates nothing; they work on the state below.
	readFn, writeFn func(fd uintptr) bool

	rmu    sync.Mutex // protects rbuf, rn, rerrno
	rbuf   []byte
	rn     int
	rerrno syscall.Errno

	wmu    sync.Mutex // protects wbuf, wdone, werrno
	wbuf   []byte
	wdone  int
	werrno syscall.Errno
}

var _ net.Conn = (*Conn)(nil)

// Wrap returns c with raw-syscall Read and Write when it is a
// *net.TCPConn on a platform that supports it, else c itself.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok || !supported {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	rw := &Conn{TCPConn: tc, rc: rc}
	rw.readFn, rw.writeFn = rw.readOnce, rw.writeAll
	return rw
}

// Read reads into p, waiting in the runtime poller while the socket has
// nothing to read.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.rbuf, c.rn, c.rerrno = p, 0, 0
	err := c.rc.Read(c.readFn)
	c.rbuf = nil
	if err := c.failed("read", err, c.rerrno); err != nil {
		return 0, err
	}
	if c.rn == 0 {
		return 0, io.EOF
	}
	return c.rn, nil
}

// readOnce is Read's callback: false asks the poller to wait.
func (c *Conn) readOnce(fd uintptr) bool {
	c.rn, c.rerrno = read(fd, c.rbuf)
	return c.rerrno != syscall.EAGAIN
}

// Write writes all of p, waiting in the runtime poller while the socket's
// send buffer is full.
func (c *Conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf, c.wdone, c.werrno = p, 0, 0
	err := c.rc.Write(c.writeFn)
	c.wbuf = nil
	return c.wdone, c.failed("write", err, c.werrno)
}

// writeAll is Write's callback: it writes until done, an error, or a full
// send buffer (false: the poller waits, then calls it again).
func (c *Conn) writeAll(fd uintptr) bool {
	for c.wdone < len(c.wbuf) {
		n, e := write(fd, c.wbuf[c.wdone:])
		if e == syscall.EAGAIN {
			return false
		}
		if e != 0 {
			c.werrno = e
			return true
		}
		c.wdone += n
	}
	return true
}

// failed returns the error of a read or write (op): the poller's err,
// else the system call's errno, else nil.
func (c *Conn) failed(op string, err error, errno syscall.Errno) error {
	switch {
	case err != nil:
		return c.opError(op, err)
	case errno != 0:
		return c.opError(op, os.NewSyscallError(op, errno))
	}
	return nil
}

// opError gives err the shape net's own Read and Write errors have. The
// RawConn already wraps its errors (poller errors: closed, deadline) in a
// *net.OpError naming "raw-read" or "raw-write"; those are renamed, which
// allocates only on that error path.
func (c *Conn) opError(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		e := *oe
		e.Op = op
		return &e
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
