package proxy

import "testing"

func TestAccessChangedFrom(t *testing.T) {
	old := &access{shared: "s", rels: map[uint32]string{1: "10:f:f", 2: "10:{app=r/postgres}:f:f"}, funcs: map[uint32]string{5: "f1"}}
	tests := []struct {
		name string
		now  *access
		want bool
	}{
		{"same", &access{shared: "s", rels: map[uint32]string{1: "10:f:f", 2: "10:{app=r/postgres}:f:f"}}, false},
		{"relation created", &access{shared: "s", rels: map[uint32]string{1: "10:f:f", 2: "10:{app=r/postgres}:f:f", 3: "10:f:f"}}, false},
		{"relation dropped", &access{shared: "s", rels: map[uint32]string{1: "10:f:f"}}, false},
		{"privilege revoked", &access{shared: "s", rels: map[uint32]string{1: "10:f:f", 2: "10:{}:f:f"}}, true},
		{"row security enabled", &access{shared: "s", rels: map[uint32]string{1: "10:t:f", 2: "10:{app=r/postgres}:f:f"}}, true},
		{"roles or settings changed", &access{shared: "s2", rels: old.rels}, true},
		{"function redefined", &access{shared: "s", rels: old.rels, funcs: map[uint32]string{5: "f2"}}, true},
		{"function dropped", &access{shared: "s", rels: old.rels, funcs: map[uint32]string{}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.now.changedFrom(old); got != tt.want {
				t.Errorf("changedFrom = %v; want %v", got, tt.want)
			}
		})
	}
}
