package cache

import (
	"strconv"
	"strings"
	"testing"
)

// TestAdmit: while the budget has room every miss is filled; once it is
// nearly spent, a key is filled only at its second miss, and room made by
// an invalidation admits everything again.
func TestAdmit(t *testing.T) {
	template := item{key: "k0", db: "db", tables: []string{"t"}, value: strings.Repeat("v", 100)}
	s := New(Config{MaxBytes: budgetFor(8, template)})

	// 7 of 8 entries' worth: under the 7/8 mark until the 7th is in.
	for i := range 7 {
		key := []byte("k" + strconv.Itoa(i))
		if !s.Admit(key) {
			t.Fatalf("Admit(%s) = false with %d of %d bytes used", key, s.Stats().Bytes, s.Stats().MaxBytes)
		}
		it := template
		it.key = string(key)
		put(t, s, it)
	}
	if st := s.Stats(); st.Unadmitted != 0 {
		t.Errorf("Unadmitted = %d before the store was full", st.Unadmitted)
	}

	// Full: first misses are refused, second ones admitted.
	for _, key := range []string{"new1", "new2"} {
		if s.Admit([]byte(key)) {
			t.Errorf("Admit(%s) = true at its first miss with the store full", key)
		}
		if !s.Admit([]byte(key)) {
			t.Errorf("Admit(%s) = false at its second miss", key)
		}
	}
	if got := s.Stats().Unadmitted; got != 2 {
		t.Errorf("Unadmitted = %d, want 2", got)
	}

	// An invalidation that empties the store makes room again.
	s.InvalidateTable("db", "t")
	if !s.Admit([]byte("new3")) {
		t.Errorf("Admit(new3) = false after the store was emptied (%d bytes used)", s.Stats().Bytes)
	}
	s.InvalidateAll()
	if !s.Admit([]byte("new4")) {
		t.Errorf("Admit(new4) = false after InvalidateAll")
	}
	checkInvariants(t, s)
}
