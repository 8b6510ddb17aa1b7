package proxy

import (
	"strings"
	"testing"
)

// TestSizedLRUBytes: the values' bytes stay within the bound, the least
// recently used go first, a replaced value's bytes are taken off once,
// and a value heavier than a sixteenth of the bound is not kept.
func TestSizedLRUBytes(t *testing.T) {
	l := newSizedLRU[int, string](1000, 1600)
	for i := range 20 {
		l.add(i, strings.Repeat("x", 100), 100)
	}
	if got := l.bytes.Load(); got != 1600 {
		t.Errorf("bytes after 20 adds of 100 under a bound of 1600: %d, want 1600", got)
	}
	if l.len() != 16 {
		t.Errorf("kept %d values, want 16", l.len())
	}
	if _, ok := l.get(3); ok {
		t.Errorf("value 3, among the least recently used, is still kept")
	}
	if _, ok := l.get(19); !ok {
		t.Errorf("value 19, the last added, is gone")
	}
	l.add(19, "y", 50) // replaces: 1600 - 100 + 50
	if got := l.bytes.Load(); got != 1550 {
		t.Errorf("bytes after replacing a value of 100 by one of 50: %d, want 1550", got)
	}
	l.add(100, "too big", 101)
	if _, ok := l.get(100); ok {
		t.Errorf("a value of 101 bytes was kept under a bound of 1600")
	}
	// The count bound still holds, and its evictions are taken off too.
	c := newSizedLRU[int, string](4, 1<<20)
	for i := range 10 {
		c.add(i, "v", 10)
	}
	if c.len() != 4 || c.bytes.Load() != 40 {
		t.Errorf("count bound 4: kept %d values of %d bytes, want 4 of 40", c.len(), c.bytes.Load())
	}
}
