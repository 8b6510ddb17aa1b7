package proxy

import (
	"testing"
	"time"
)

func TestParseMillis(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"0", 0, true},
		{"250", 250 * time.Millisecond, true},
		{"1500ms", 1500 * time.Millisecond, true},
		{"30s", 30 * time.Second, true},
		{"5min", 5 * time.Minute, true},
		{"2h", 2 * time.Hour, true},
		{"1d", 24 * time.Hour, true},
		{"", 0, false},
		{"ms", 0, false},
		{"5 min", 0, false},
		{"-1", 0, false},
		{"1.5s", 0, false},
		{"10us", 0, false},
		{"99999999999999999999", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseMillis([]byte(tt.in))
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseMillis(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
