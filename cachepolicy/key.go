package cachepolicy

import (
	"crypto/sha256"
	"encoding/binary"
)

// AppendKey appends an unambiguous encoding of parts to dst: each part is
// preceded by its length as a uvarint, so ("ab", "c") and ("a", "bc")
// differ. It does not allocate when dst has room.
func AppendKey(dst []byte, parts ...[]byte) []byte {
	for _, p := range parts {
		dst = binary.AppendUvarint(dst, uint64(len(p)))
		dst = append(dst, p...)
	}
	return dst
}

// DigestSize is the length of a Digest.
const DigestSize = 16

// Digest stands in a key for a long part that many keys share (the
// session's settings, a statement's text): the first 128 bits of its
// SHA-256, computed once when the part changes rather than copied into
// every key. Finding two parts with one digest takes about 2^64 work, so
// keys built from digests are as distinct as the parts themselves.
func Digest(b []byte) [DigestSize]byte {
	sum := sha256.Sum256(b)
	return [DigestSize]byte(sum[:DigestSize])
}
