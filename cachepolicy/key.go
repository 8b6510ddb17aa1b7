package cachepolicy

import "encoding/binary"

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
