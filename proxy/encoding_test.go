package proxy

import "testing"

// TestClientEncodingText: texts are read as PostgreSQL parses them: a
// single-byte client encoding converted to UTF-8, a multibyte one other
// than UTF8 not read at all when it has a non-ASCII byte, and UTF8 or
// SQL_ASCII as they are.
func TestClientEncodingText(t *testing.T) {
	for _, tc := range []struct {
		encoding, sql, want string
		unreadable          bool
	}{
		{"UTF8", "SELECT 'caf\xc3\xa9'", "SELECT 'caf\xc3\xa9'", false},
		{"SQL_ASCII", "SELECT 'caf\xe9'", "SELECT 'caf\xe9'", false},
		{"LATIN1", "SELECT 'caf\xe9'", "SELECT 'caf\xc3\xa9'", false},
		{"WIN1251", "SELECT '\xcf'", "SELECT '\xd0\x9f'", false},
		{"LATIN1", "SELECT 'cafe'", "SELECT 'cafe'", false},
		{"SJIS", "SELECT E'\x95\\'; UPDATE t SET n = 1; -- '", "", true},
		{"SJIS", "SELECT 'plain'", "SELECT 'plain'", false},
		{"BIG5", "SELECT '\xa4\x40'", "", true},
	} {
		s := new(session)
		s.encoding.Store(clientEncodingOf(tc.encoding))
		if p := s.unreadable([]byte(tc.sql)); (p != nil) != tc.unreadable {
			t.Errorf("%s %q: unreadable %v, want %v", tc.encoding, tc.sql, p != nil, tc.unreadable)
		}
		if tc.unreadable {
			continue
		}
		if got := string(s.serverText([]byte(tc.sql))); got != tc.want {
			t.Errorf("%s %q: read as %q, want %q", tc.encoding, tc.sql, got, tc.want)
		}
	}
}
