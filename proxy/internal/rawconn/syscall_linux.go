package rawconn

import (
	"syscall"
	"unsafe"
)

const supported = true

// read is read(2) without the scheduler's syscall bookkeeping: the fd is
// non-blocking, so the call never sleeps.
func read(fd uintptr, p []byte) (int, syscall.Errno) {
	n, e := rawIO(syscall.SYS_READ, fd, p)
	if e == 0 {
		raceRead(p, n)
	}
	return n, e
}

// write is write(2) as read is read(2).
func write(fd uintptr, p []byte) (int, syscall.Errno) {
	raceBeforeWrite()
	n, e := rawIO(syscall.SYS_WRITE, fd, p)
	if e == 0 {
		raceWrote(p, n)
	}
	return n, e
}

// rawIO makes the raw system call trap (read or write) on fd and p, which
// is not empty, retrying EINTR.
func rawIO(trap, fd uintptr, p []byte) (int, syscall.Errno) {
	for {
		n, _, e := syscall.RawSyscall(trap, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if e != syscall.EINTR {
			return int(n), e
		}
	}
}
