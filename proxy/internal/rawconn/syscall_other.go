//go:build !linux

package rawconn

import "syscall"

// supported is false: Wrap returns connections unchanged, so read and
// write are never called.
const supported = false

func read(uintptr, []byte) (int, syscall.Errno)  { return 0, syscall.ENOSYS }
func write(uintptr, []byte) (int, syscall.Errno) { return 0, syscall.ENOSYS }
