//go:build !linux

package rawconn

import "syscall"

// supported is false: Wrap returns connections unchanged.
const supported = false

func read(fd uintptr, p []byte) (int, syscall.Errno)  { panic("rawconn: unsupported platform") }
func write(fd uintptr, p []byte) (int, syscall.Errno) { panic("rawconn: unsupported platform") }
