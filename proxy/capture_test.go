package proxy

import "testing"

// TestCaptureBudget: fills together hold at most the budget; one that
// would pass it is aborted, and what it held is given back.
func TestCaptureBudget(t *testing.T) {
	b := &captureBudget{max: 100}
	row := append([]byte{'D', 0, 0, 0, 59}, make([]byte, 55)...) // 60 bytes
	first := &fillState{budget: b, max: 1 << 20}
	first.capture('D', row)
	second := &fillState{budget: b, max: 1 << 20}
	second.capture('D', row)
	if first.aborted || !second.aborted {
		t.Fatalf("aborted: first %v, second %v; want only the second, past the budget of 100", first.aborted, second.aborted)
	}
	if got := b.used.Load(); got != 60 {
		t.Errorf("budget used %d after the second fill was aborted, want 60", got)
	}
	first.release()
	if got := b.used.Load(); got != 0 {
		t.Errorf("budget used %d after both fills ended, want 0", got)
	}
	third := &fillState{budget: b, max: 1 << 20}
	third.capture('D', row)
	if third.aborted {
		t.Error("a fill after the others ended was aborted")
	}
	third.release()
}
