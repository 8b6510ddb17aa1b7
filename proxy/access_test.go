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
	storage := map[uint32]string{1: "t:100", 2: "u:200"}
	old := &access{shared: "s", rels: rels, storage: storage, funcs: funcs, relNames: names, funcNames: fnames}
	tests := []struct {
		name string
		now  *access
		want bool
		only []string // namesOnly: the answers of these names alone go
	}{
		{"same", &access{shared: "s", rels: rels, storage: storage, funcs: funcs, relNames: names, funcNames: fnames}, false, nil},
		{"relation looked up since", &access{shared: "s", rels: map[uint32]string{1: "10:f:f", 2: "10:{app=r/postgres}:f:f", 3: "10:f:f"}, storage: storage, funcs: funcs, relNames: names, funcNames: fnames}, false, nil},
		{"relation dropped", &access{shared: "s", rels: map[uint32]string{1: "10:f:f"}, storage: storage, funcs: funcs, relNames: names, funcNames: fnames}, true, nil},
		{"privilege revoked", &access{shared: "s", rels: map[uint32]string{1: "10:f:f", 2: "10:{}:f:f"}, storage: storage, funcs: funcs, relNames: names, funcNames: fnames}, true, nil},
		{"row security enabled", &access{shared: "s", rels: map[uint32]string{1: "10:t:f", 2: "10:{app=r/postgres}:f:f"}, storage: storage, funcs: funcs, relNames: names, funcNames: fnames}, true, nil},
		{"roles or settings changed", &access{shared: "s2", rels: rels, storage: storage, funcs: funcs, relNames: names, funcNames: fnames}, true, nil},
		{"function redefined", &access{shared: "s", rels: rels, storage: storage, funcs: map[uint32]string{5: "f2"}, relNames: names, funcNames: fnames}, true, nil},
		{"function dropped", &access{shared: "s", rels: rels, storage: storage, funcs: map[uint32]string{}, relNames: names, funcNames: fnames}, true, nil},
		{"relation of a watched name created", &access{shared: "s", rels: rels, storage: storage, funcs: funcs, relNames: map[string]string{"t": "1,7", "u": "2"}, funcNames: fnames}, true, []string{"t"}},
		{"relation rewritten", &access{shared: "s", rels: rels, storage: map[uint32]string{1: "t:100", 2: "u:201"}, funcs: funcs, relNames: names, funcNames: fnames}, true, []string{"u"}},
		{"both", &access{shared: "s", rels: rels, storage: map[uint32]string{1: "t:100", 2: "u:201"}, funcs: funcs, relNames: map[string]string{"t": "1,7", "u": "2"}, funcNames: fnames}, true, []string{"t", "u"}},
		{"relation of a watched name created, and a grant", &access{shared: "s2", rels: rels, storage: storage, funcs: funcs, relNames: map[string]string{"t": "1,7", "u": "2"}, funcNames: fnames}, true, nil},
		{"overload created", &access{shared: "s", rels: rels, storage: storage, funcs: funcs, relNames: names, funcNames: map[string]string{"f": "5,900,901"}}, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.now.changedFrom(old); got != tt.want {
				t.Errorf("changedFrom = %v; want %v", got, tt.want)
			}
			// A new relation of a watched name or a rewrite drops less than
			// the database's answers: those of the names concerned.
			if names, _ := tt.now.namesOnly(old); !slices.Equal(names, tt.only) {
				t.Errorf("namesOnly = %q; want %q", names, tt.only)
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
