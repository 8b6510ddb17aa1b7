package integration

import (
	"slices"
	"time"

	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgproto3"
)

// typeCorpus covers the types whose encodings a relay must not touch.
var typeCorpus = []string{
	`SELECT 1::int2 AS a, 2::int4, 3000000000::int8, 1.5::float4, -2.25e100::float8, 'Infinity'::float8`,
	`SELECT 12345.678901234567890123::numeric AS n, 'NaN'::numeric, 0::numeric(10,3), -1e-20::numeric`,
	`SELECT 'héllo wörld ✓ 日本語 🐘'::text AS t, ''::text, 'x'::varchar(3), 'c'::char(4), 'name'::name`,
	`SELECT '\xdeadbeef00'::bytea AS b, ''::bytea, true, false`,
	`SELECT ARRAY[1,2,NULL,4]::int[] AS a, ARRAY['a','b c','"q"']::text[], '{{1,2},{3,4}}'::int[], '{}'::int8[]`,
	`SELECT '{"a":[1,2,{"b":null}],"ü":"✓"}'::json AS j, '{"a":[1,2,{"b":null}],"ü":"✓"}'::jsonb`,
	`SELECT 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u, '192.168.0.1/24'::inet, 'A'::"char"`,
	`SELECT '2024-02-29 13:45:56.789+05:30'::timestamptz AS tz, '2024-02-29 13:45:56.789'::timestamp, '2024-02-29'::date, '13:45:56.5'::time, '13:45:56+02'::timetz, 'infinity'::timestamptz`,
	`SELECT '1 year 2 mons 3 days 04:05:06.789'::interval AS i, '-1 day'::interval`,
	`SELECT NULL::int AS n, NULL::text, NULL::bytea, NULL::int[]`,
	`SELECT g, g * 2 AS twice FROM generate_series(1, 0) g`,
	`SELECT g, md5(g::text) FROM generate_series(1, 500) g`,
	`SELECT repeat('x', 300000) AS big`,
	`SELECT 1/0`,
	`SELECT * FROM no_such_table`,
}

// simpleOnly holds cases only the simple protocol can send.
var simpleOnly = []string{
	`SET TimeZone = 'America/New_York'; SELECT '2024-02-29 13:45:56+00'::timestamptz; RESET TimeZone`,
	`SELECT 1; SELECT 'two'; SELECT 1/0; SELECT 'not reached'`,
	`DO $$ BEGIN RAISE NOTICE 'notice % from a DO block', 42; RAISE WARNING 'and a warning'; END $$`,
	`BEGIN; SELECT 1; COMMIT`,
	`BEGIN; SELECT 1/0; ROLLBACK`,
	``,
	`;`,
}

// TestByteIdentical checks that, through the proxy and directly, the same
// requests get byte-identical replies, for the type corpus in the simple and
// the extended protocol, with text and binary results.
func TestByteIdentical(t *testing.T) {
	pg := StartPostgres(t)
	sc := StartSqlcache(t, SqlcacheConfig{Backend: pg.Addr()})
	params := map[string]string{"user": "postgres", "database": "postgres", "application_name": "bytes"}

	direct, directStartup := dialRaw(t, pg.Addr(), params)
	proxied, proxiedStartup := dialRaw(t, sc.Addr, params)
	// BackendKeyData differs between any two sessions; the rest of the
	// startup (ParameterStatus, ReadyForQuery) must not.
	if diff := cmp.Diff(withoutKeyData(directStartup), withoutKeyData(proxiedStartup)); diff != "" {
		t.Errorf("startup messages differ (-direct +proxy):\n%s", diff)
	}

	compare := func(t *testing.T, syncs int, msgs ...pgproto3.FrontendMessage) {
		t.Helper()
		want := direct.roundTrip(syncs, msgs...)
		got := proxied.roundTrip(syncs, msgs...)
		if diff := diffFrames(want, got); diff != "" {
			t.Errorf("replies differ (-direct +proxy):\n%s", diff)
		}
		if len(want) < 2 {
			t.Errorf("got only %v; the comparison proves nothing", want)
		}
	}

	for _, q := range append(append([]string{}, typeCorpus...), simpleOnly...) {
		t.Run("simple/"+q, func(t *testing.T) {
			compare(t, 1, &pgproto3.Query{String: q})
		})
	}
	for _, format := range []int16{0, 1} {
		name := map[int16]string{0: "text", 1: "binary"}[format]
		for _, q := range typeCorpus {
			t.Run("extended/"+name+"/"+q, func(t *testing.T) {
				compare(t, 1,
					&pgproto3.Parse{Query: q},
					&pgproto3.Bind{ResultFormatCodes: []int16{format}},
					&pgproto3.Describe{ObjectType: 'P'},
					&pgproto3.Execute{},
					&pgproto3.Sync{})
			})
		}
		t.Run("extended/"+name+"/params", func(t *testing.T) {
			compare(t, 1,
				&pgproto3.Parse{Name: "p_" + name, Query: `SELECT $1::int + 1 AS n, $2::text || '!' AS t, $3::bytea AS b`},
				&pgproto3.Describe{ObjectType: 'S', Name: "p_" + name},
				&pgproto3.Bind{PreparedStatement: "p_" + name, ParameterFormatCodes: []int16{0, 0, 1},
					Parameters: [][]byte{[]byte("41"), []byte("ü"), {0, 1, 2}}, ResultFormatCodes: []int16{format}},
				&pgproto3.Execute{},
				&pgproto3.Close{ObjectType: 'S', Name: "p_" + name},
				&pgproto3.Sync{})
		})
	}
	t.Run("extended/pipeline", func(t *testing.T) {
		// Several Bind/Execute on a named statement and portals before one
		// Sync, a row-limited Execute (PortalSuspended) and its resumption,
		// an error that makes the backend skip to Sync, and a second Sync.
		compare(t, 2,
			&pgproto3.Parse{Name: "pipe", Query: `SELECT g FROM generate_series(1, $1::int) g`},
			&pgproto3.Bind{DestinationPortal: "a", PreparedStatement: "pipe", Parameters: [][]byte{[]byte("3")}},
			&pgproto3.Bind{DestinationPortal: "b", PreparedStatement: "pipe", Parameters: [][]byte{[]byte("5")}},
			&pgproto3.Execute{Portal: "a"},
			&pgproto3.Execute{Portal: "b", MaxRows: 2},
			&pgproto3.Execute{Portal: "b", MaxRows: 2},
			&pgproto3.Execute{Portal: "b"},
			&pgproto3.Close{ObjectType: 'P', Name: "a"},
			&pgproto3.Flush{},
			&pgproto3.Bind{PreparedStatement: "pipe", Parameters: [][]byte{[]byte("not a number")}},
			&pgproto3.Execute{},
			&pgproto3.Sync{},
			&pgproto3.Bind{PreparedStatement: "pipe", Parameters: [][]byte{[]byte("2")}},
			&pgproto3.Execute{},
			&pgproto3.Sync{})
	})
	t.Run("function_call", func(t *testing.T) {
		// FunctionCall of int4abs (OID 1251) on -7.
		compare(t, 1, &pgproto3.FunctionCall{Function: 1251, ArgFormatCodes: []uint16{0},
			Arguments: [][]byte{[]byte("-7")}, ResultFormatCode: 0})
	})
}

func withoutKeyData(fs []frame) []frame {
	var out []frame
	for _, f := range fs {
		if f[0] != 'K' {
			out = append(out, f)
		}
	}
	return out
}

// TestPausedBatch: a client that pauses between the messages of one
// extended-protocol batch sees what PostgreSQL does, which starts on each
// message as it arrives: here statement_timeout, running from the Parse,
// cancels the statement before the Describe comes (the case of pgx's
// TestPrepareHandlesTimeoutBetweenParseAndDescribe, jackc/pgx#2223).
func TestPausedBatch(t *testing.T) {
	pg := StartPostgres(t)
	sc := StartSqlcache(t, SqlcacheConfig{Backend: pg.Addr()})
	params := map[string]string{"user": "postgres", "database": "postgres"}
	paused := func(addr string) []frame {
		c, _ := dialRaw(t, addr, params)
		c.roundTrip(1, &pgproto3.Query{String: "SET statement_timeout = '100ms'"})
		c.send(&pgproto3.Parse{Name: "t", Query: "SELECT $1::varchar"})
		time.Sleep(300 * time.Millisecond)
		return c.roundTrip(1, &pgproto3.Describe{ObjectType: 'S', Name: "t"}, &pgproto3.Sync{})
	}
	want, got := paused(pg.Addr()), paused(sc.Addr)
	if !slices.ContainsFunc(want, func(f frame) bool { return errorCode(f) == "57014" }) {
		t.Fatalf("directly: %v; want a statement timeout (57014), as the test assumes", want)
	}
	if diff := diffFrames(want, got); diff != "" {
		t.Errorf("replies differ (-direct +proxy):\n%s", diff)
	}
}
