package cachepolicy_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sqlcache/sqlcache/cachepolicy"
)

// rowFacts: accounts has an int4 primary key aid.
var rowFacts = cachepolicy.Facts{
	Relations: map[string][]relInfo{
		"accounts":  {{Schema: "public", Name: "accounts", Kind: 'r', Key: "aid", KeyType: 23}},
		"big":       {{Schema: "public", Name: "big", Kind: 'r', Key: "id", KeyType: 20}},
		"named":     {{Schema: "public", Name: "named", Kind: 'r', Key: "name", KeyType: 25}},
		"nokey":     {{Schema: "public", Name: "nokey", Kind: 'r'}},
		"twice":     {{Schema: "public", Name: "twice", Kind: 'r', Key: "id", KeyType: 23}, {Schema: "other", Name: "twice", Kind: 'r', Key: "id", KeyType: 23}},
		"part_1":    {{Schema: "public", Name: "part_1", Kind: 'r', Key: "id", KeyType: 23, Root: "part", Base: []string{"part"}}},
		"v_account": {{Schema: "public", Name: "v_account", Kind: 'v', Base: []string{"accounts"}}},
		"branches":  {{Schema: "public", Name: "branches", Kind: 'r', Key: "bid", KeyType: 23}},
	},
	Functions: map[string][]funcInfo{
		"lower":      {{Name: "lower", Volatility: 'i', BuiltIn: true}},
		"count":      {{Name: "count", Volatility: 'i', BuiltIn: true}},
		"avg":        {{Name: "avg", Volatility: 'i', BuiltIn: true}},
		"operator =": {{Name: "int4eq", Volatility: 'i', BuiltIn: true}},
		"operator >": {{Name: "int4gt", Volatility: 'i', BuiltIn: true}},
		"cast int4":  {{Name: "int4", Volatility: 'i', BuiltIn: true}},
	},
}

func TestDecideRow(t *testing.T) {
	acct := &cachepolicy.RowRead{Table: "accounts", Column: "aid", Param: 1, KeyType: 23}
	for _, tc := range []struct {
		sql  string
		want *cachepolicy.RowRead
	}{
		{`SELECT abalance FROM accounts WHERE aid = $1`, acct},
		{`SELECT abalance FROM accounts WHERE $1 = aid`, acct},
		{`SELECT a.abalance FROM accounts a WHERE a.aid = $1 AND a.abalance > $2`, acct},
		{`SELECT count(*) FROM accounts WHERE accounts.aid = $2 AND abalance > $1`, &cachepolicy.RowRead{Table: "accounts", Column: "aid", Param: 2, KeyType: 23}},
		{`SELECT * FROM big WHERE id = $1`, &cachepolicy.RowRead{Table: "big", Column: "id", Param: 1, KeyType: 20}},
		{`SELECT abalance FROM accounts WHERE aid = $1 OR aid = $2`, nil},
		{`SELECT abalance FROM accounts WHERE aid > $1`, nil},
		{`SELECT abalance FROM accounts WHERE aid = 7`, &cachepolicy.RowRead{Table: "accounts", Column: "aid", Const: "7", KeyType: 23}},
		{`SELECT abalance FROM accounts WHERE 0 = aid AND abalance > 5`, &cachepolicy.RowRead{Table: "accounts", Column: "aid", Const: "0", KeyType: 23}},
		{`SELECT abalance FROM accounts WHERE aid = 7 AND abalance IN (` + strings.Repeat("1, ", 600) + `1)`, &cachepolicy.RowRead{Table: "accounts", Column: "aid", Const: "7", KeyType: 23}}, // too long to keep its tokens
		{`SELECT abalance FROM accounts WHERE aid = -7`, nil},
		{`SELECT abalance FROM accounts WHERE aid = '7'`, nil},
		{`SELECT abalance FROM accounts WHERE aid = 7.0`, nil},
		{`SELECT abalance FROM accounts WHERE aid = 3000000000`, nil},
		{`SELECT abalance FROM accounts WHERE aid = 7::int`, nil},
		{`SELECT abalance FROM accounts WHERE aid = NULL`, nil},
		{`SELECT abalance FROM accounts WHERE aid = $1::int`, nil},
		{`SELECT abalance FROM accounts WHERE abalance = $1`, nil},
		{`SELECT abalance FROM accounts a WHERE accounts.aid = $1`, nil},     // not a's column
		{`SELECT abalance FROM accounts AS a(bid, aid) WHERE aid = $1`, nil}, // a's aid is accounts' second column
		{`SELECT abalance FROM accounts WHERE aid = $1 AND abalance > (SELECT avg(abalance) FROM accounts)`, nil},
		{`SELECT abalance, (SELECT 1) FROM accounts WHERE aid = $1`, nil},
		{`SELECT abalance FROM accounts, branches WHERE aid = $1`, nil},
		{`SELECT abalance FROM accounts JOIN branches USING (bid) WHERE aid = $1`, nil},
		{`WITH x AS (SELECT 1) SELECT abalance FROM accounts WHERE aid = $1`, nil},
		{`SELECT abalance FROM accounts WHERE aid = $1 UNION SELECT 1`, nil},
		{`SELECT * FROM named WHERE name = $1`, nil}, // not an integer key
		{`SELECT * FROM nokey WHERE id = $1`, nil},
		{`SELECT * FROM twice WHERE id = $1`, nil}, // which schema's?
		{`SELECT * FROM part_1 WHERE id = $1`, nil},
		{`SELECT * FROM v_account WHERE aid = $1`, nil},
	} {
		a := cachepolicy.Analyze(tc.sql)
		d := cachepolicy.Decide(a, tc.sql, rowFacts, nil, 0)
		if !d.Cacheable {
			t.Errorf("%s: not cacheable: %s", tc.sql, d.Reason)
			continue
		}
		if diff := cmp.Diff(tc.want, d.Row); diff != "" {
			t.Errorf("%s: Row (-want +got):\n%s", tc.sql, diff)
		}
	}
}

func TestWriteRow(t *testing.T) {
	for _, tc := range []struct {
		sql string
		ok  bool
		key string // Const, or "" for $1
	}{
		{`UPDATE accounts SET abalance = abalance + $2 WHERE aid = $1`, true, ""},
		{`UPDATE accounts a SET abalance = 0 WHERE a.aid = $1 AND abalance > 0 RETURNING abalance`, true, ""},
		{`DELETE FROM accounts WHERE aid = $1`, true, ""},
		{`UPDATE accounts SET aid = $2 WHERE aid = $1`, false, ""}, // the key moves
		{`UPDATE accounts SET abalance = 0 WHERE aid = $1 OR bid = $2`, false, ""},
		{`UPDATE accounts SET abalance = 0 WHERE aid = 5`, true, "5"},
		{`UPDATE accounts SET abalance = 0 WHERE aid = -5`, false, ""},
		{`DELETE FROM accounts WHERE aid = 0012`, true, "12"},
		{`UPDATE accounts SET abalance = 0`, false, ""},
		{`INSERT INTO accounts VALUES ($1, 0)`, false, ""}, // which column is which: not said
		{`INSERT INTO accounts (aid, abalance) VALUES ($1, $2)`, true, ""},
		{`INSERT INTO accounts (abalance, aid) VALUES ($2, $1) RETURNING aid`, true, ""},
		{`INSERT INTO accounts (aid, abalance) VALUES ($1, 0) ON CONFLICT DO NOTHING`, true, ""},
		{`INSERT INTO accounts (aid, abalance) VALUES ($1, 0) ON CONFLICT (aid) DO UPDATE SET abalance = excluded.abalance`, true, ""},
		{`INSERT INTO accounts (aid, abalance) VALUES ($1, 0) ON CONFLICT (bid) DO UPDATE SET abalance = 1`, false, ""},
		{`INSERT INTO accounts (aid, abalance) VALUES ($1, 0) ON CONFLICT (aid) DO UPDATE SET aid = 7`, false, ""},
		{`INSERT INTO accounts (aid, abalance) VALUES ($1, 0) ON CONFLICT ON CONSTRAINT accounts_pkey DO UPDATE SET abalance = 1`, false, ""},
		{`INSERT INTO accounts (aid, abalance) VALUES ($1, 0), ($2, 0)`, false, ""},
		{`INSERT INTO accounts (aid, abalance) SELECT $1, 0`, false, ""},
		{`INSERT INTO accounts (aid, abalance) VALUES (7, 0)`, true, "7"},
		{`INSERT INTO accounts (aid, abalance) VALUES (7, $1) ON CONFLICT (aid) DO UPDATE SET abalance = 1`, true, "7"},
		{`INSERT INTO accounts (aid, abalance) VALUES ('7', 0)`, false, ""},
		{`INSERT INTO accounts (abalance) VALUES ($1)`, false, ""},
		{`WITH d AS (DELETE FROM branches RETURNING bid) UPDATE accounts SET abalance = 0 WHERE aid = $1`, false, ""},
		{`UPDATE accounts SET abalance = 0 WHERE aid = $1; SELECT 1`, false, ""},
		{`UPDATE named SET v = 0 WHERE name = $1`, false, ""},
		{`UPDATE twice SET v = 0 WHERE id = $1`, false, ""},
	} {
		r, ok := cachepolicy.WriteRow(cachepolicy.Analyze(tc.sql), rowFacts)
		if ok != tc.ok {
			t.Errorf("WriteRow(%s) = %+v, %t; want %t", tc.sql, r, ok, tc.ok)
		}
		want := cachepolicy.RowRead{Table: "accounts", Column: "aid", Param: 1, KeyType: 23}
		if tc.key != "" {
			want.Param, want.Const = 0, tc.key
		}
		if diff := cmp.Diff(want, r); ok && diff != "" {
			t.Errorf("WriteRow(%s) (-want +got):\n%s", tc.sql, diff)
		}
	}
}

func TestRowKey(t *testing.T) {
	int4 := cachepolicy.RowRead{KeyType: 23}
	int8 := cachepolicy.RowRead{KeyType: 20}
	for _, tc := range []struct {
		r        cachepolicy.RowRead
		value    string
		binary   bool
		declared uint32
		want     string
		ok       bool
	}{
		{int4, "42", false, 0, "42", true},
		{int4, " +0042 ", false, 0, "42", true},
		{int4, "-7", false, 23, "-7", true},
		{int4, "42", false, 705, "42", true},
		{int4, "4_2", false, 0, "", false},
		{int4, "0x2a", false, 0, "", false},
		{int4, "42.0", false, 0, "", false},
		{int4, "", false, 0, "", false},
		{int4, "42", false, 25, "", false},   // declared text
		{int4, "42", false, 1700, "", false}, // declared numeric
		{int4, "\x00\x00\x00\x2a", true, 0, "42", true},
		{int4, "\xff\xff\xff\xff", true, 0, "-1", true},
		{int4, "\x00\x00\x00\x00\x00\x00\x00\x2a", true, 0, "", false}, // 8 bytes for an int4 parameter
		{int4, "\x00\x00\x00\x00\x00\x00\x00\x2a", true, 20, "42", true},
		{int4, "\x00\x2a", true, 21, "42", true},
		{int8, "\x00\x00\x00\x00\x00\x00\x00\x2a", true, 0, "42", true},
		{int8, "\x00\x00\x00\x00\x00\x00\x00\x2a", true, 1700, "", false}, // an 8-byte numeric
	} {
		got, ok := cachepolicy.RowKey(tc.r, []byte(tc.value), tc.binary, tc.declared)
		if got != tc.want || ok != tc.ok {
			t.Errorf("RowKey(%d, %q, binary %t, declared %d) = %q, %t; want %q, %t", tc.r.KeyType, tc.value, tc.binary, tc.declared, got, ok, tc.want, tc.ok)
		}
	}
}
