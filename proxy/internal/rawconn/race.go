//go:build race && linux

package rawconn

import (
	"runtime"
	"unsafe"
)

// ioSync stands for the kernel between a write and the read that sees its
// bytes, as syscall's own ioSync does: the race detector cannot see raw
// system calls, so read and write tell it what syscall.Read and
// syscall.Write would.
var ioSync int64

// raceRead follows a read that returned n (no error).
func raceRead(p []byte, n int) {
	if n > 0 {
		runtime.RaceWriteRange(unsafe.Pointer(&p[0]), n)
	}
	runtime.RaceAcquire(unsafe.Pointer(&ioSync))
}

func raceBeforeWrite() { runtime.RaceReleaseMerge(unsafe.Pointer(&ioSync)) }

func raceWrote(p []byte, n int) {
	if n > 0 {
		runtime.RaceReadRange(unsafe.Pointer(&p[0]), n)
	}
}
