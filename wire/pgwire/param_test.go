package pgwire

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// bindArgs returns the Args of a Bind with the given formats and values.
func bindArgs(t *testing.T, formats []int16, values [][]byte) []byte {
	t.Helper()
	raw, err := (&pgproto3.Bind{ParameterFormatCodes: formats, Parameters: values}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ParseBind(raw[5:])
	if err != nil {
		t.Fatal(err)
	}
	return b.Args
}

func TestParam(t *testing.T) {
	vals := [][]byte{[]byte("7"), nil, {0, 0, 0, 9}}
	for _, tc := range []struct {
		name    string
		formats []int16
		i       int
		value   string
		binary  bool
		null    bool
		err     bool
	}{
		{"text by default", nil, 0, "7", false, false, false},
		{"null", nil, 1, "", false, true, false},
		{"last", nil, 2, "\x00\x00\x00\x09", false, false, false},
		{"one format for all", []int16{1}, 2, "\x00\x00\x00\x09", true, false, false},
		{"per parameter", []int16{0, 0, 1}, 2, "\x00\x00\x00\x09", true, false, false},
		{"per parameter, text", []int16{0, 1, 1}, 0, "7", false, false, false},
		{"past the end", nil, 3, "", false, false, true},
		{"negative", nil, -1, "", false, false, true},
		{"format count mismatch", []int16{0, 1}, 0, "", false, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, bin, null, err := Param(bindArgs(t, tc.formats, vals), tc.i)
			if (err != nil) != tc.err {
				t.Fatalf("err %v; want error %t", err, tc.err)
			}
			if err == nil && (string(v) != tc.value || bin != tc.binary || null != tc.null) {
				t.Errorf("Param = %q, binary %t, null %t; want %q, %t, %t", v, bin, null, tc.value, tc.binary, tc.null)
			}
		})
	}
	for _, args := range [][]byte{nil, {0}, {0, 1}, {0, 0, 0, 1, 0, 0, 0, 5, 'x'}} {
		if _, _, _, err := Param(args, 0); err == nil {
			t.Errorf("Param(%q) accepted malformed args", args)
		}
	}
}

func TestAnyParam(t *testing.T) {
	isNow := func(v []byte) bool { return string(v) == "now" }
	for _, tc := range []struct {
		name    string
		formats []int16
		values  [][]byte
		want    bool
	}{
		{"text", nil, [][]byte{[]byte("1"), []byte("now")}, true},
		{"binary too", []int16{1}, [][]byte{[]byte("now")}, true},
		{"per parameter", []int16{1, 0}, [][]byte{[]byte("now"), []byte("now")}, true},
		{"per parameter, binary", []int16{0, 1}, [][]byte{[]byte("x"), []byte("now")}, true},
		{"neither", []int16{0, 1}, [][]byte{[]byte("x"), []byte("y")}, false},
		{"null", nil, [][]byte{nil}, false},
		{"none", nil, nil, false},
	} {
		got, err := AnyParam(bindArgs(t, tc.formats, tc.values), isNow)
		if err != nil || got != tc.want {
			t.Errorf("%s: AnyParam = %t, %v; want %t", tc.name, got, err, tc.want)
		}
	}
	if _, err := AnyParam([]byte{0, 2, 0, 0}, isNow); err == nil {
		t.Error("AnyParam accepted truncated args")
	}
}
