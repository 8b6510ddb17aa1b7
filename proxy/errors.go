package proxy

import "syscall"

var errTooManyFiles = syscall.EMFILE

// SQLSTATE codes sqlcache itself reports.
const (
	codeProtocolViolation  = "08P01"
	codeConnectionFailure  = "08006"
	codeCannotConnect      = "08001"
	codeAdminShutdown      = "57P01"
	codeFeatureUnsupported = "0A000"
)
