package proxy

import (
	"slices"
	"testing"
)

func TestAccessChangedFrom(t *testing.T) {
	rels := map[uint32]string{1: "10:f:f", 2: "10:{app=r/postgres}:f:f"}
	funcs := map[uint32]string{5: "f1"}
	names := map[string]string{"t": "1", "u": "2"}
	fnames := map[string]string{"f": "5,900"}
	old := &access{shared: "s", rels: rels, funcs: funcs, relNames: names, funcNames: fnames}
	tests := []struct {
		name string
		now  *access
		want bool
	}{
		{"same", &access{shared: "s", rels: rels, funcs: funcs, relNames: names, funcNames: fnames}, false},
		{"relation looked up since", &access{shared: "s", rels: map[uint32]string{1: "10:f:f", 2: "10:{app=r/postgres}:f:f", 3: "10:f:f"}, funcs: funcs, relNames: names, funcNames: fnames}, false},
		{"relation dropped", &access{shared: "s", rels: map[uint32]string{1: "10:f:f"}, funcs: funcs, relNames: names, funcNames: fnames}, true},
		{"privilege revoked", &access{shared: "s", rels: map[uint32]string{1: "10:f:f", 2: "10:{}:f:f"}, funcs: funcs, relNames: names, funcNames: fnames}, true},
		{"row security enabled", &access{shared: "s", rels: map[uint32]string{1: "10:t:f", 2: "10:{app=r/postgres}:f:f"}, funcs: funcs, relNames: names, funcNames: fnames}, true},
		{"roles or settings changed", &access{shared: "s2", rels: rels, funcs: funcs, relNames: names, funcNames: fnames}, true},
		{"function redefined", &access{shared: "s", rels: rels, funcs: map[uint32]string{5: "f2"}, relNames: names, funcNames: fnames}, true},
		{"function dropped", &access{shared: "s", rels: rels, funcs: map[uint32]string{}, relNames: names, funcNames: fnames}, true},
		{"relation of a watched name created", &access{shared: "s", rels: rels, funcs: funcs, relNames: map[string]string{"t": "1,7", "u": "2"}, funcNames: fnames}, true},
		{"relation of a watched name created, and a grant", &access{shared: "s2", rels: rels, funcs: funcs, relNames: map[string]string{"t": "1,7", "u": "2"}, funcNames: fnames}, true},
		{"overload created", &access{shared: "s", rels: rels, funcs: funcs, relNames: names, funcNames: map[string]string{"f": "5,900,901"}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.now.changedFrom(old); got != tt.want {
				t.Errorf("changedFrom = %v; want %v", got, tt.want)
			}
			// Only a new relation of a watched name drops less than the
			// database's answers: those of that name.
			names, ok := tt.now.namesOnly(old)
			if want := tt.name == "relation of a watched name created"; ok != want || ok && !slices.Equal(names, []string{"t"}) {
				t.Errorf("namesOnly = %q, %v; want [t] only for a new relation of a watched name", names, ok)
			}
		})
	}
}

func TestAppendOID(t *testing.T) {
	var list string
	for _, oid := range []uint32{16400, 900, 16384, 900} {
		list = appendOID(list, oid)
	}
	if want := "900,16384,16400"; list != want {
		t.Errorf("appendOID: %q; want %q (ascending by number, as ORDER BY oid)", list, want)
	}
}
