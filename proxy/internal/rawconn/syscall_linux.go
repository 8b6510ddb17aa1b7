package rawconn

import (
	"syscall"
	"unsafe"
)

const supported = true

// read is read(2) without the scheduler's syscall bookkeeping: the fd is
// non-blocking, so the call never sleeps. EINTR is retried.
func read(fd uintptr, p []byte) (int, syscall.Errno) {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if e != syscall.EINTR {
			if e == 0 {
				raceRead(p, int(n))
			}
			return int(n), e
		}
	}
}

// write is write(2) as read is read(2); p is not empty.
func write(fd uintptr, p []byte) (int, syscall.Errno) {
	raceBeforeWrite()
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if e != syscall.EINTR {
			if e == 0 {
				raceWrote(p, int(n))
			}
			return int(n), e
		}
	}
}
