package pgwire_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/sqlcache/sqlcache/wire/pgwire"
)

// frame is a message as a test sees it: copied out of the Reader's buffer,
// with the body of a streamed message filled in when it was copied.
type frame struct {
	Type     byte
	Len      int
	Body     []byte
	Streamed bool
}

// raw builds one framed message by hand, so that tests can also build the
// malformed ones pgproto3 refuses to encode.
func raw(typ byte, body []byte) []byte {
	b := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(len(body)+4))
	return append(b, body...)
}

// header is a type byte and a length field claiming l (length included).
func header(typ byte, l uint32) []byte {
	b := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], l)
	return b
}

// encode concatenates messages encoded by pgproto3.
func encode(t testing.TB, msgs ...pgproto3.Message) []byte {
	t.Helper()
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = m.Encode(b); err != nil {
			t.Fatalf("encode %T: %v", m, err)
		}
	}
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// equateBytes compares byte slices whole: cmp's element-wise walk takes
// most of a second on the 100 kB bodies here.
var equateBytes = cmp.Comparer(bytes.Equal)

// readAll calls Next until it fails and returns the frames read and that
// error. Streamed bodies are copied with CopyBody when copyStreamed is set,
// and left for Next to skip otherwise.
func readAll(t *testing.T, r *pgwire.Reader, copyStreamed bool) ([]frame, error) {
	t.Helper()
	var got []frame
	for {
		m, err := r.Next()
		if err != nil {
			return got, err
		}
		checkMessage(t, m)
		f := frame{Type: m.Type, Len: m.Len, Streamed: m.Streamed()}
		if !m.Streamed() {
			f.Body = bytes.Clone(m.Body)
		} else if copyStreamed {
			var body bytes.Buffer
			if err := r.CopyBody(&body); err != nil {
				return append(got, f), err
			}
			f.Body = body.Bytes()
		}
		got = append(got, f)
	}
}

// checkMessage checks that the fields of m agree with each other.
func checkMessage(t testing.TB, m pgwire.Message) {
	t.Helper()
	h := m.Header()
	if h[0] != m.Type || int(binary.BigEndian.Uint32(h[1:])) != m.Len+4 {
		t.Errorf("Header() = %v for Type %q Len %d", h, m.Type, m.Len)
	}
	if m.Streamed() {
		if m.Body != nil {
			t.Errorf("streamed message has Body %q", m.Body)
		}
		return
	}
	if len(m.Raw) != 5+m.Len || !bytes.Equal(m.Raw[:5], h[:]) || !bytes.Equal(m.Raw[5:], m.Body) {
		t.Errorf("Raw %q does not frame Body %q (Type %q, Len %d)", m.Raw, m.Body, m.Type, m.Len)
	}
}

// sources are the ways a byte stream can arrive.
var sources = []struct {
	name string
	wrap func(io.Reader) io.Reader
}{
	{"whole", func(r io.Reader) io.Reader { return r }},
	{"one byte", iotest.OneByteReader},
	{"half", iotest.HalfReader},
	{"data with EOF", iotest.DataErrReader},
}

func TestReaderFraming(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 100_000) // over DefaultBufferSize, under DefaultInlineMax
	tests := []struct {
		name string
		in   []byte
		want []frame
	}{
		{name: "empty"},
		{
			name: "extended query batch",
			in: encode(t,
				&pgproto3.Parse{Name: "s1", Query: "SELECT $1::int"},
				&pgproto3.Bind{PreparedStatement: "s1", Parameters: [][]byte{[]byte("42")}},
				&pgproto3.Describe{ObjectType: 'P'},
				&pgproto3.Execute{},
				&pgproto3.Sync{},
			),
			want: []frame{
				{Type: 'P', Len: 20, Body: []byte("s1\x00SELECT $1::int\x00\x00\x00")},
				{Type: 'B', Len: 16, Body: []byte("\x00s1\x00\x00\x00\x00\x01\x00\x00\x00\x0242\x00\x00")},
				{Type: 'D', Len: 2, Body: []byte("P\x00")},
				{Type: 'E', Len: 5, Body: []byte("\x00\x00\x00\x00\x00")},
				{Type: 'S', Len: 0, Body: []byte{}},
			},
		},
		{
			name: "big inline body between small ones",
			in:   cat(raw('Q', []byte("a\x00")), raw('d', big), raw('Q', []byte("b\x00"))),
			want: []frame{
				{Type: 'Q', Len: 2, Body: []byte("a\x00")},
				{Type: 'd', Len: len(big), Body: big},
				{Type: 'Q', Len: 2, Body: []byte("b\x00")},
			},
		},
		{
			name: "many empty bodies",
			in:   bytes.Repeat(raw('S', nil), 5000), // 25000 bytes, over one buffer
			want: func() []frame {
				f := make([]frame, 5000)
				for i := range f {
					f[i] = frame{Type: 'S', Body: []byte{}}
				}
				return f
			}(),
		},
	}
	for _, tt := range tests {
		for _, src := range sources {
			t.Run(tt.name+"/"+src.name, func(t *testing.T) {
				r := pgwire.NewReader(src.wrap(bytes.NewReader(tt.in)), 0)
				got, err := readAll(t, r, true)
				if err != io.EOF {
					t.Errorf("final error = %v; want io.EOF", err)
				}
				if diff := cmp.Diff(tt.want, got, equateBytes); diff != "" {
					t.Errorf("frames (-want +got):\n%s", diff)
				}
				if n := r.Buffered(); n != 0 {
					t.Errorf("Buffered() = %d at EOF; want 0", n)
				}
			})
		}
	}
}

// errBlocked stands for a Read that would block.
var errBlocked = errors.New("read would block")

// chunks returns one chunk per Read, then errBlocked.
type chunks [][]byte

func (c *chunks) Read(p []byte) (int, error) {
	if len(*c) == 0 {
		return 0, errBlocked
	}
	n := copy(p, (*c)[0])
	if (*c)[0] = (*c)[0][n:]; len((*c)[0]) == 0 {
		*c = (*c)[1:]
	}
	return n, nil
}

func TestReaderReady(t *testing.T) {
	q1 := raw('Q', []byte("SELECT 1\x00"))
	q2 := raw('Q', []byte("SELECT 2\x00"))
	streamed := raw('d', bytes.Repeat([]byte("y"), 100)) // over the inline max of 16
	tests := []struct {
		name   string
		chunks [][]byte
		// ready is Ready() before each call to Next.
		ready []bool
		// copyStreamed consumes a streamed body with CopyBody right after
		// Next returns it.
		copyStreamed bool
	}{
		{name: "nothing read yet", ready: []bool{false}},
		{name: "two messages in one read", chunks: [][]byte{cat(q1, q2)}, ready: []bool{false, true, false}},
		{name: "one message per read", chunks: [][]byte{q1, q2}, ready: []bool{false, false, false}},
		{name: "header split", chunks: [][]byte{cat(q1, q2[:3]), q2[3:]}, ready: []bool{false, false, false}},
		{name: "length field split", chunks: [][]byte{cat(q1, q2[:4]), q2[4:]}, ready: []bool{false, false, false}},
		{name: "body split", chunks: [][]byte{cat(q1, q2[:7]), q2[7:]}, ready: []bool{false, false, false}},
		{name: "all but the last byte", chunks: [][]byte{cat(q1, q2[:len(q2)-1]), q2[len(q2)-1:]}, ready: []bool{false, false, false}},
		{name: "empty body", chunks: [][]byte{cat(q1, raw('S', nil))}, ready: []bool{false, true, false}},
		// Next returns the header of a streamed body without reading on;
		// the body itself is pending, so Ready is false until it is gone.
		{name: "streamed header", chunks: [][]byte{cat(q1, streamed[:5])}, ready: []bool{false, true, false}},
		{name: "streamed body pending", chunks: [][]byte{cat(q1, streamed, q2)}, ready: []bool{false, true, false}},
		{name: "streamed body consumed", chunks: [][]byte{cat(q1, streamed, q2)}, ready: []bool{false, true, true, false}, copyStreamed: true},
		// Next fails at once on a bad length, so it does not block either.
		{name: "invalid length", chunks: [][]byte{cat(q1, header('Q', 3))}, ready: []bool{false, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := chunks(tt.chunks)
			r := pgwire.NewReader(&src, 0)
			r.SetInlineMax(16)
			for i, want := range tt.ready {
				if got := r.Ready(); got != want {
					t.Fatalf("Ready() before Next #%d = %v; want %v", i, got, want)
				}
				m, err := r.Next()
				if want && errors.Is(err, errBlocked) {
					t.Fatalf("Next #%d read from the source after Ready() = true", i)
				}
				if err == nil && m.Streamed() && tt.copyStreamed {
					if err := r.CopyBody(io.Discard); err != nil {
						t.Fatalf("CopyBody: %v", err)
					}
				}
			}
		})
	}
}

func TestReaderStreamed(t *testing.T) {
	const inlineMax = 8
	body := func(n int) []byte { return bytes.Repeat([]byte("b"), n) }
	// An input message and the frame Next returns for it, before CopyBody.
	tests := []struct {
		name string
		body []byte
	}{
		{"empty", body(0)},
		{"at the inline max", body(inlineMax)},
		{"one over the inline max", body(inlineMax + 1)},
		{"larger than the buffer", body(3*pgwire.DefaultBufferSize + 7)},
	}
	next := raw('Z', []byte("I"))
	for _, tt := range tests {
		in := cat(raw('d', tt.body), next, raw('d', tt.body))
		streamed := len(tt.body) > inlineMax
		for _, src := range sources {
			t.Run(tt.name+"/"+src.name+"/copied", func(t *testing.T) {
				r := pgwire.NewReader(src.wrap(bytes.NewReader(in)), 0)
				r.SetInlineMax(inlineMax)
				got, err := readAll(t, r, true)
				if err != io.EOF {
					t.Errorf("final error = %v; want io.EOF", err)
				}
				want := []frame{
					{Type: 'd', Len: len(tt.body), Body: tt.body, Streamed: streamed},
					{Type: 'Z', Len: 1, Body: []byte("I")},
					{Type: 'd', Len: len(tt.body), Body: tt.body, Streamed: streamed},
				}
				if diff := cmp.Diff(want, got, equateBytes); diff != "" {
					t.Errorf("frames (-want +got):\n%s", diff)
				}
			})
			t.Run(tt.name+"/"+src.name+"/skipped", func(t *testing.T) {
				r := pgwire.NewReader(src.wrap(bytes.NewReader(in)), 0)
				r.SetInlineMax(inlineMax)
				got, err := readAll(t, r, false)
				if err != io.EOF {
					t.Errorf("final error = %v; want io.EOF", err)
				}
				want := []frame{
					{Type: 'd', Len: len(tt.body), Body: tt.body, Streamed: streamed},
					{Type: 'Z', Len: 1, Body: []byte("I")},
					{Type: 'd', Len: len(tt.body), Body: tt.body, Streamed: streamed},
				}
				if streamed {
					want[0].Body, want[2].Body = nil, nil
				}
				if diff := cmp.Diff(want, got, equateBytes); diff != "" {
					t.Errorf("frames (-want +got):\n%s", diff)
				}
			})
		}
	}
}

func TestCopyBodyNothingPending(t *testing.T) {
	r := pgwire.NewReader(bytes.NewReader(raw('Z', []byte("I"))), 0)
	if err := r.CopyBody(io.Discard); err != pgwire.ErrBodyPending {
		t.Errorf("CopyBody before Next = %v; want ErrBodyPending", err)
	}
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if err := r.CopyBody(io.Discard); err != pgwire.ErrBodyPending {
		t.Errorf("CopyBody after an inline message = %v; want ErrBodyPending", err)
	}
}

// failWriter fails every write after the first ok bytes.
type failWriter struct{ ok int }

var errWrite = errors.New("write failed")

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) <= w.ok {
		w.ok -= len(p)
		return len(p), nil
	}
	n := w.ok
	w.ok = 0
	return n, errWrite
}

// TestCopyBodyWriteError checks that a failing destination is reported and
// leaves the framing intact: the next Next returns the following message.
func TestCopyBodyWriteError(t *testing.T) {
	body := bytes.Repeat([]byte("b"), 1000)
	in := cat(raw('d', body), raw('Z', []byte("I")))
	tests := []struct {
		name string
		ok   int // bytes the writer accepts before failing
	}{
		{"first write", 0},
		{"mid body", 500},
		{"last byte", len(body) - 1},
	}
	for _, tt := range tests {
		for _, src := range sources {
			t.Run(tt.name+"/"+src.name, func(t *testing.T) {
				r := pgwire.NewReader(src.wrap(bytes.NewReader(in)), 0)
				r.SetInlineMax(10)
				m, err := r.Next()
				if err != nil || !m.Streamed() {
					t.Fatalf("Next = %+v, %v; want a streamed message", m, err)
				}
				if err := r.CopyBody(&failWriter{ok: tt.ok}); err != errWrite {
					t.Errorf("CopyBody = %v; want %v", err, errWrite)
				}
				m, err = r.Next()
				if err != nil || m.Type != 'Z' || string(m.Body) != "I" {
					t.Errorf("Next after failed CopyBody = %q, %v; want ReadyForQuery", m.Raw, err)
				}
			})
		}
	}
}

func TestReaderTooLarge(t *testing.T) {
	tests := []struct {
		name      string
		limit     int
		inlineMax int // 0: default
		in        []byte
		want      *pgwire.TooLargeError
	}{
		{
			name:  "1 GiB claim, 5 bytes sent",
			limit: 1 << 20,
			in:    header('D', 1<<30),
			want:  &pgwire.TooLargeError{Type: 'D', Len: 1<<30 - 4, Limit: 1 << 20},
		},
		{
			name:  "largest length field",
			limit: 1 << 20,
			in:    header('Q', 0x7fffffff),
			want:  &pgwire.TooLargeError{Type: 'Q', Len: 0x7fffffff - 4, Limit: 1 << 20},
		},
		{
			name:  "one over the limit",
			limit: 16,
			in:    raw('Q', bytes.Repeat([]byte("q"), 17)),
			want:  &pgwire.TooLargeError{Type: 'Q', Len: 17, Limit: 16},
		},
		{
			name:  "at the limit",
			limit: 16,
			in:    raw('Q', bytes.Repeat([]byte("q"), 16)),
		},
		{
			name:      "limit checked before streaming",
			limit:     16,
			inlineMax: 4,
			in:        raw('d', bytes.Repeat([]byte("q"), 17)),
			want:      &pgwire.TooLargeError{Type: 'd', Len: 17, Limit: 16},
		},
		{
			name:  "after a good message",
			limit: 16,
			in:    cat(raw('S', nil), header('P', 1000)),
			want:  &pgwire.TooLargeError{Type: 'P', Len: 996, Limit: 16},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := pgwire.NewReader(bytes.NewReader(tt.in), tt.limit)
			if tt.inlineMax != 0 {
				r.SetInlineMax(tt.inlineMax)
			}
			_, err := readAll(t, r, true)
			if tt.want == nil {
				if err != io.EOF {
					t.Errorf("error = %v; want io.EOF", err)
				}
				return
			}
			var got *pgwire.TooLargeError
			if !errors.As(err, &got) {
				t.Fatalf("error = %v (%T); want *TooLargeError", err, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if !strings.Contains(got.Error(), "exceeds the limit") {
				t.Errorf("Error() = %q", got.Error())
			}
		})
	}
}

// TestReaderTooLargeAllocates nothing proves that a length claim over the
// limit is refused before the body is read or a buffer for it allocated.
func TestReaderTooLargeAllocatesNothing(t *testing.T) {
	r := pgwire.NewReader(bytes.NewReader(header('D', 1<<30)), 1<<20)

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := r.Next()
	runtime.ReadMemStats(&after)
	var tl *pgwire.TooLargeError
	if !errors.As(err, &tl) {
		t.Fatalf("Next = %v; want *TooLargeError (not a read of the body)", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("Next allocated %d bytes for a refused 1 GiB message", n)
	}
	// The refused header stays put, so Next fails the same way again; each
	// call allocates only the error.
	allocs := testing.AllocsPerRun(10, func() {
		if _, err := r.Next(); !errors.As(err, &tl) {
			t.Fatalf("Next again = %v; want *TooLargeError", err)
		}
	})
	if allocs > 1 {
		t.Errorf("Next allocated %v times per refused message; want at most 1 (the error)", allocs)
	}
}

// TestReaderNoLimitStreams checks that without a limit a huge claim is
// streamed rather than buffered.
func TestReaderNoLimitStreams(t *testing.T) {
	r := pgwire.NewReader(bytes.NewReader(cat(header('d', 1<<30), []byte("abc"))), 0)
	m, err := r.Next()
	if err != nil || !m.Streamed() || m.Len != 1<<30-4 {
		t.Fatalf("Next = %+v, %v; want a streamed message of %d bytes", m, err, 1<<30-4)
	}
	var got bytes.Buffer
	if err := r.CopyBody(&got); err != io.ErrUnexpectedEOF {
		t.Errorf("CopyBody = %v; want io.ErrUnexpectedEOF", err)
	}
	if got.String() != "abc" {
		t.Errorf("CopyBody wrote %q; want %q", got.String(), "abc")
	}
}

func TestReaderInvalidLength(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want *pgwire.InvalidLengthError
	}{
		{"zero", header('Q', 0), &pgwire.InvalidLengthError{Type: 'Q', Len: 0}},
		{"three", header('Q', 3), &pgwire.InvalidLengthError{Type: 'Q', Len: 3}},
		{"negative", header('B', 0xffffffff), &pgwire.InvalidLengthError{Type: 'B', Len: -1}},
		{"most negative", header('B', 0x80000000), &pgwire.InvalidLengthError{Type: 'B', Len: -1 << 31}},
		{"after a good message", cat(raw('S', nil), header('X', 2)), &pgwire.InvalidLengthError{Type: 'X', Len: 2}},
	}
	for _, tt := range tests {
		for _, src := range sources {
			t.Run(tt.name+"/"+src.name, func(t *testing.T) {
				r := pgwire.NewReader(src.wrap(bytes.NewReader(tt.in)), 1<<20)
				_, err := readAll(t, r, true)
				var got *pgwire.InvalidLengthError
				if !errors.As(err, &got) {
					t.Fatalf("error = %v (%T); want *InvalidLengthError", err, err)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("error (-want +got):\n%s", diff)
				}
			})
		}
	}
}

func TestReaderEOF(t *testing.T) {
	q := raw('Q', []byte("SELECT 1\x00"))
	errSource := errors.New("connection reset")
	tests := []struct {
		name      string
		in        []byte
		after     error // returned by the source after in; nil means io.EOF
		inlineMax int
		want      error
		frames    int
	}{
		{name: "empty", want: io.EOF},
		{name: "at a boundary", in: cat(q, q), want: io.EOF, frames: 2},
		{name: "in the type byte", in: cat(q, q[:1]), want: io.ErrUnexpectedEOF, frames: 1},
		{name: "in the length", in: cat(q, q[:4]), want: io.ErrUnexpectedEOF, frames: 1},
		{name: "after the length", in: cat(q, q[:5]), want: io.ErrUnexpectedEOF, frames: 1},
		{name: "in the body", in: q[:len(q)-1], want: io.ErrUnexpectedEOF},
		{name: "in a streamed body", in: q[:len(q)-1], inlineMax: 2, want: io.ErrUnexpectedEOF, frames: 1},
		{name: "after a streamed body", in: cat(q, q), inlineMax: 2, want: io.EOF, frames: 2},
		{name: "source error at a boundary", in: q, after: errSource, want: errSource, frames: 1},
		{name: "source error mid message", in: q[:6], after: errSource, want: errSource},
	}
	for _, tt := range tests {
		for _, src := range sources {
			t.Run(tt.name+"/"+src.name, func(t *testing.T) {
				var in io.Reader = bytes.NewReader(tt.in)
				if tt.after != nil {
					in = io.MultiReader(in, iotest.ErrReader(tt.after))
				}
				r := pgwire.NewReader(src.wrap(in), 0)
				if tt.inlineMax != 0 {
					r.SetInlineMax(tt.inlineMax)
				}
				got, err := readAll(t, r, true)
				if err != tt.want {
					t.Errorf("error = %v; want %v", err, tt.want)
				}
				if len(got) != tt.frames {
					t.Errorf("read %d messages; want %d", len(got), tt.frames)
				}
				// Errors are sticky.
				if _, err2 := r.Next(); tt.want == io.EOF && err2 != io.EOF {
					t.Errorf("Next after io.EOF = %v; want io.EOF", err2)
				}
			})
		}
	}
}

// startup builds a StartupMessage by hand: pgproto3 encodes only the
// versions it speaks.
func startup(version uint32, kv ...string) []byte {
	b := binary.BigEndian.AppendUint32(make([]byte, 4), version)
	for _, s := range kv {
		b = append(append(b, s...), 0)
	}
	b = append(b, 0)
	binary.BigEndian.PutUint32(b, uint32(len(b)))
	return b
}

// request builds a startup packet of a length, a code and a tail.
func request(code uint32, tail ...byte) []byte {
	b := binary.BigEndian.AppendUint32(make([]byte, 4), code)
	b = append(b, tail...)
	binary.BigEndian.PutUint32(b, uint32(len(b)))
	return b
}

func TestReadStartup(t *testing.T) {
	msg := startup(3<<16, "user", "alice", "database", "app")
	maxPacket := startup(3<<16, "user", strings.Repeat("u", pgwire.MaxStartupPacket-15))
	if len(maxPacket) != pgwire.MaxStartupPacket {
		t.Fatalf("maxPacket is %d bytes", len(maxPacket))
	}
	tests := []struct {
		name    string
		in      []byte
		want    [][]byte // packets, then typed messages
		wantErr error    // compared with cmp when typed, else ==
	}{
		{name: "startup message", in: msg, want: [][]byte{msg}, wantErr: io.EOF},
		{name: "ssl then startup", in: cat(request(pgwire.CodeSSLRequest), msg), want: [][]byte{request(pgwire.CodeSSLRequest), msg}, wantErr: io.EOF},
		{name: "at the limit", in: maxPacket, want: [][]byte{maxPacket}, wantErr: io.EOF},
		{
			name:    "over the limit, header only",
			in:      binary.BigEndian.AppendUint32(nil, pgwire.MaxStartupPacket+1),
			wantErr: &pgwire.TooLargeError{Len: pgwire.MaxStartupPacket + 1, Limit: pgwire.MaxStartupPacket},
		},
		{
			name:    "negative length",
			in:      binary.BigEndian.AppendUint32(nil, 0xfffffff0),
			wantErr: &pgwire.InvalidLengthError{Len: -16},
		},
		{
			name:    "shorter than a request code",
			in:      []byte{0, 0, 0, 7, 1, 2, 3},
			wantErr: &pgwire.InvalidLengthError{Len: 7},
		},
		{name: "empty", wantErr: io.EOF},
		{name: "in the length", in: msg[:3], wantErr: io.ErrUnexpectedEOF},
		{name: "in the body", in: msg[:len(msg)-1], wantErr: io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		for _, src := range sources {
			t.Run(tt.name+"/"+src.name, func(t *testing.T) {
				r := pgwire.NewReader(src.wrap(bytes.NewReader(tt.in)), 0)
				var got [][]byte
				var err error
				for {
					var p []byte
					if p, err = r.ReadStartup(pgwire.MaxStartupPacket); err != nil {
						break
					}
					got = append(got, bytes.Clone(p))
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("packets (-want +got):\n%s", diff)
				}
				switch tt.wantErr.(type) {
				case *pgwire.TooLargeError, *pgwire.InvalidLengthError:
					if diff := cmp.Diff(tt.wantErr, err); diff != "" {
						t.Errorf("error (-want +got):\n%s", diff)
					}
				default:
					if err != tt.wantErr {
						t.Errorf("error = %v; want %v", err, tt.wantErr)
					}
				}
			})
		}
	}
}

// TestReadStartupThenNext is the order of a real session: startup packets,
// then typed messages on the same Reader.
func TestReadStartupThenNext(t *testing.T) {
	pw := encode(t, &pgproto3.PasswordMessage{Password: "secret"})
	in := cat(request(pgwire.CodeSSLRequest), startup(3<<16, "user", "alice"), pw, raw('X', nil))
	r := pgwire.NewReader(iotest.OneByteReader(bytes.NewReader(in)), 0)
	for range 2 {
		if _, err := r.ReadStartup(pgwire.MaxStartupPacket); err != nil {
			t.Fatalf("ReadStartup: %v", err)
		}
	}
	got, err := readAll(t, r, true)
	if err != io.EOF {
		t.Errorf("error = %v; want io.EOF", err)
	}
	want := []frame{{Type: 'p', Len: 7, Body: []byte("secret\x00")}, {Type: 'X', Body: []byte{}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("frames (-want +got):\n%s", diff)
	}
}

func TestParseStartup(t *testing.T) {
	secret32 := bytes.Repeat([]byte{0xab}, 32)
	tests := []struct {
		name    string
		in      []byte
		want    pgwire.Startup // Raw is filled in from in
		wantErr string         // substring; empty for success
		wantIs  error
	}{
		{
			name: "3.0",
			in:   startup(3<<16, "user", "alice", "database", "app", "options", "-c search_path=s"),
			want: pgwire.Startup{Kind: pgwire.StartupMessage, Version: 3 << 16, Params: map[string]string{
				"user": "alice", "database": "app", "options": "-c search_path=s",
			}},
		},
		{
			name: "3.2",
			in:   startup(3<<16|2, "user", "alice"),
			want: pgwire.Startup{Kind: pgwire.StartupMessage, Version: 3<<16 | 2, Params: map[string]string{"user": "alice"}},
		},
		{
			name: "unknown minor 3.9",
			in:   startup(3<<16|9, "user", "bob", "_pq_.extension", "on"),
			want: pgwire.Startup{Kind: pgwire.StartupMessage, Version: 3<<16 | 9, Params: map[string]string{"user": "bob", "_pq_.extension": "on"}},
		},
		{
			name: "empty value",
			in:   startup(3<<16, "user", "alice", "application_name", ""),
			want: pgwire.Startup{Kind: pgwire.StartupMessage, Version: 3 << 16, Params: map[string]string{"user": "alice", "application_name": ""}},
		},
		{name: "SSLRequest", in: request(pgwire.CodeSSLRequest), want: pgwire.Startup{Kind: pgwire.SSLRequest, Version: pgwire.CodeSSLRequest}},
		{name: "GSSENCRequest", in: request(pgwire.CodeGSSENCRequest), want: pgwire.Startup{Kind: pgwire.GSSENCRequest, Version: pgwire.CodeGSSENCRequest}},
		{
			name: "CancelRequest",
			in:   request(pgwire.CodeCancelRequest, 0, 0, 0x30, 0x39 /* pid 12345 */, 0xde, 0xad, 0xbe, 0xef /* secret */),
			want: pgwire.Startup{Kind: pgwire.CancelRequest, Version: pgwire.CodeCancelRequest,
				Cancel: pgproto3.CancelRequest{ProcessID: 12345, SecretKey: []byte{0xde, 0xad, 0xbe, 0xef}}},
		},
		{
			name: "CancelRequest with a 3.2 long secret",
			in:   request(pgwire.CodeCancelRequest, append([]byte{0, 0, 0, 7}, secret32...)...),
			want: pgwire.Startup{Kind: pgwire.CancelRequest, Version: pgwire.CodeCancelRequest,
				Cancel: pgproto3.CancelRequest{ProcessID: 7, SecretKey: secret32}},
		},
		{name: "CancelRequest without secret", in: request(pgwire.CodeCancelRequest, 0, 0, 0, 1), wantErr: "CancelRequest"},
		{name: "SSLRequest with a tail", in: request(pgwire.CodeSSLRequest, 0), wantErr: "invalid startup packet length 9"},
		{name: "protocol 2.0", in: startup(2<<16, "user", "alice"), wantIs: pgwire.ErrUnsupportedProtocol, wantErr: "2.0"},
		{name: "protocol 4.0", in: startup(4<<16, "user", "alice"), wantIs: pgwire.ErrUnsupportedProtocol, wantErr: "4.0"},
		{name: "unknown request code", in: request(1234<<16 | 5681), wantIs: pgwire.ErrUnsupportedProtocol},
		{name: "no parameters", in: startup(3 << 16), wantErr: "StartupMessage"},
		{name: "unterminated value", in: request(3<<16, []byte("user\x00alice")...), wantErr: "StartupMessage"},
		{name: "too short", in: []byte{0, 0, 0, 4}, wantErr: "invalid startup packet length 4"},
		{name: "nil", wantErr: "invalid startup packet length 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := pgwire.ParseStartup(tt.in)
			if tt.wantErr != "" || tt.wantIs != nil {
				if err == nil {
					t.Fatalf("ParseStartup = %+v; want an error", got)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %q does not contain %q", err, tt.wantErr)
				}
				if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
					t.Errorf("error %v is not %v", err, tt.wantIs)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseStartup: %v", err)
			}
			want := tt.want
			want.Raw = tt.in
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("ParseStartup (-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseStartupKeepsInput checks that decoding an unknown minor version
// does not rewrite the packet that will be relayed.
func TestParseStartupKeepsInput(t *testing.T) {
	in := startup(3<<16|9, "user", "bob")
	orig := bytes.Clone(in)
	if _, err := pgwire.ParseStartup(in); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(in, orig) {
		t.Errorf("ParseStartup changed its input to %q", in)
	}
}

func TestStartupKindString(t *testing.T) {
	for k, want := range map[pgwire.StartupKind]string{
		pgwire.StartupMessage: "StartupMessage",
		pgwire.SSLRequest:     "SSLRequest",
		pgwire.GSSENCRequest:  "GSSENCRequest",
		pgwire.CancelRequest:  "CancelRequest",
		9:                     "StartupKind(9)",
	} {
		if got := k.String(); got != want {
			t.Errorf("got %q; want %q", got, want)
		}
	}
}

// body returns the body of a message pgproto3 encodes.
func body(t testing.TB, m pgproto3.Message) []byte {
	t.Helper()
	return encode(t, m)[5:]
}

func TestSeverity(t *testing.T) {
	tests := []struct {
		name      string
		body      []byte
		severity  string
		wantFatal bool
	}{
		{
			name:     "error",
			body:     body(t, &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "42P01", Message: `relation "t" does not exist`, Position: 15, File: "parse_relation.c", Line: 1392, Routine: "parserOpenTable"}),
			severity: "ERROR",
		},
		{
			name:      "fatal",
			body:      body(t, &pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "28P01", Message: `password authentication failed for user "alice"`}),
			severity:  "FATAL",
			wantFatal: true,
		},
		{
			name:      "panic",
			body:      body(t, &pgproto3.ErrorResponse{Severity: "PANIC", SeverityUnlocalized: "PANIC", Code: "XX000", Message: "could not locate a valid checkpoint record"}),
			severity:  "PANIC",
			wantFatal: true,
		},
		{
			name:      "localized fatal",
			body:      body(t, &pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "57P01", Message: "Beendung der Verbindung aufgrund von Anweisung des Administrators"}),
			severity:  "FATAL",
			wantFatal: true,
		},
		{
			name:      "localized S, unlocalized V",
			body:      body(t, &pgproto3.ErrorResponse{Severity: "SCHWERWIEGEND", SeverityUnlocalized: "FATAL", Code: "57P01", Message: "x"}),
			severity:  "FATAL",
			wantFatal: true,
		},
		{
			name:     "localized error",
			body:     body(t, &pgproto3.ErrorResponse{Severity: "FEHLER", SeverityUnlocalized: "ERROR", Code: "22012", Message: "Division durch Null"}),
			severity: "ERROR",
		},
		{
			name:      "before 9.6: S only",
			body:      body(t, &pgproto3.ErrorResponse{Severity: "FATAL", Code: "3D000", Message: `database "x" does not exist`}),
			severity:  "FATAL",
			wantFatal: true,
		},
		{
			name:     "V before S",
			body:     []byte("SFEHLER\x00CXX000\x00VERROR\x00\x00"),
			severity: "ERROR",
		},
		{
			name:     "notice",
			body:     body(t, &pgproto3.NoticeResponse{Severity: "WARNING", SeverityUnlocalized: "WARNING", Code: "01000", Message: "careful"}),
			severity: "WARNING",
		},
		{name: "no severity", body: body(t, &pgproto3.ErrorResponse{Code: "XX000", Message: "FATAL"})},
		{name: "empty", body: nil},
		{name: "terminator only", body: []byte{0}},
		{name: "unterminated severity", body: []byte("VFATAL")},
		{name: "stops at the terminator", body: []byte("CXX000\x00\x00VFATAL\x00\x00")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pgwire.Severity(tt.body); got != tt.severity {
				t.Errorf("Severity = %q; want %q", got, tt.severity)
			}
			if got := pgwire.IsFatal(tt.body); got != tt.wantFatal {
				t.Errorf("IsFatal = %v; want %v", got, tt.wantFatal)
			}
		})
	}
}

func TestAppendError(t *testing.T) {
	tests := []struct {
		name                    string
		prefix                  []byte
		severity, code, message string
	}{
		{"fatal", nil, "FATAL", "08006", "sqlcache: backend unreachable"},
		{"after other bytes", []byte("Z\x00\x00\x00\x05I"), "ERROR", "54000", "message too large"},
		{"unicode", []byte{}, "ERROR", "XX000", "ünïcødé ✓"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := bytes.Clone(tt.prefix)
			out := pgwire.AppendError(tt.prefix, tt.severity, tt.code, tt.message)
			if !bytes.Equal(out[:len(prefix)], prefix) {
				t.Fatalf("AppendError changed the prefix to %q", out[:len(prefix)])
			}
			msg := out[len(prefix):]
			r := pgwire.NewReader(bytes.NewReader(msg), 0)
			m, err := r.Next()
			if err != nil || m.Type != pgwire.MsgErrorResponse {
				t.Fatalf("framing %q: %+v, %v", msg, m, err)
			}
			if _, err := r.Next(); err != io.EOF {
				t.Errorf("bytes after the ErrorResponse (%v)", err)
			}
			var got pgproto3.ErrorResponse
			if err := got.Decode(m.Body); err != nil {
				t.Fatalf("pgproto3 decode: %v", err)
			}
			want := pgproto3.ErrorResponse{Severity: tt.severity, SeverityUnlocalized: tt.severity, Code: tt.code, Message: tt.message}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("decoded (-want +got):\n%s", diff)
			}
			if got, want := pgwire.IsFatal(m.Body), tt.severity == "FATAL"; got != want {
				t.Errorf("IsFatal = %v; want %v", got, want)
			}
		})
	}
}

func TestReadyForQuery(t *testing.T) {
	for _, s := range []pgwire.TxStatus{pgwire.TxIdle, pgwire.TxActive, pgwire.TxFailed} {
		out := pgwire.AppendReadyForQuery([]byte("x"), s)
		var want pgproto3.ReadyForQuery
		want.TxStatus = byte(s)
		if w := encode(t, &want); !bytes.Equal(out[1:], w) {
			t.Errorf("AppendReadyForQuery(%q) = %q; want %q", s, out[1:], w)
		}
		if got, ok := pgwire.ReadyStatus(out[6:]); !ok || got != s {
			t.Errorf("ReadyStatus = %q, %v; want %q", got, ok, s)
		}
	}
	for _, b := range [][]byte{nil, []byte("II")} {
		if _, ok := pgwire.ReadyStatus(b); ok {
			t.Errorf("ReadyStatus(%q) ok", b)
		}
	}
}

func TestStripSASLMechanism(t *testing.T) {
	const plus = "SCRAM-SHA-256-PLUS"
	sasl := func(mechs ...string) []byte { return body(t, &pgproto3.AuthenticationSASL{AuthMechanisms: mechs}) }
	tests := []struct {
		name    string
		body    []byte
		want    []string // mechanisms left when ok
		wantOK  bool
		wantErr bool
	}{
		{name: "plus first", body: sasl(plus, "SCRAM-SHA-256"), want: []string{"SCRAM-SHA-256"}, wantOK: true},
		{name: "plus last", body: sasl("SCRAM-SHA-256", plus), want: []string{"SCRAM-SHA-256"}, wantOK: true},
		{name: "plus between", body: sasl("X-A", plus, "SCRAM-SHA-256"), want: []string{"X-A", "SCRAM-SHA-256"}, wantOK: true},
		{name: "plus only", body: sasl(plus), want: nil, wantOK: true},
		{name: "plus twice", body: sasl(plus, "SCRAM-SHA-256", plus), want: []string{"SCRAM-SHA-256"}, wantOK: true},
		{name: "no plus", body: sasl("SCRAM-SHA-256")},
		{name: "prefix of plus", body: sasl("SCRAM-SHA-256-PLU", "SCRAM-SHA-256-PLUS2")},
		{name: "no mechanisms", body: sasl()},
		{name: "md5 request", body: body(t, &pgproto3.AuthenticationMD5Password{Salt: [4]byte{1, 2, 3, 4}}), wantErr: true},
		{name: "too short", body: []byte{0, 0, 0}, wantErr: true},
		{name: "unterminated", body: []byte("\x00\x00\x00\x0aSCRAM-SHA-256"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := bytes.Clone(tt.body)
			out, ok, err := pgwire.StripSASLMechanism(tt.body, plus)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v; want error %v", err, tt.wantErr)
			}
			if !bytes.Equal(tt.body, in) {
				t.Errorf("input changed to %q", tt.body)
			}
			if err != nil {
				return
			}
			if ok != tt.wantOK {
				t.Errorf("ok = %v; want %v", ok, tt.wantOK)
			}
			if !ok {
				if !bytes.Equal(out, tt.body) {
					t.Errorf("unchanged offer came back as %q; want %q", out, tt.body)
				}
				return
			}
			// The result must frame and decode as an AuthenticationSASL.
			var got pgproto3.AuthenticationSASL
			if err := got.Decode(out); err != nil {
				t.Fatalf("decode %q: %v", out, err)
			}
			if diff := cmp.Diff(tt.want, got.AuthMechanisms); diff != "" {
				t.Errorf("mechanisms (-want +got):\n%s", diff)
			}
			if !bytes.Equal(out, sasl(tt.want...)) {
				t.Errorf("body = %q; want %q", out, sasl(tt.want...))
			}
		})
	}
}

func TestAuthCode(t *testing.T) {
	tests := []struct {
		body []byte
		code uint32
		ok   bool
	}{
		{body(t, &pgproto3.AuthenticationOk{}), pgwire.AuthOK, true},
		{body(t, &pgproto3.AuthenticationSASL{AuthMechanisms: []string{"SCRAM-SHA-256"}}), pgwire.AuthSASL, true},
		{body(t, &pgproto3.AuthenticationSASLFinal{Data: []byte("v=x")}), pgwire.AuthSASLFinal, true},
		{[]byte{0, 0, 0}, 0, false},
	}
	for _, tt := range tests {
		code, ok := pgwire.AuthCode(tt.body)
		if code != tt.code || ok != tt.ok {
			t.Errorf("AuthCode(%q) = %d, %v; want %d, %v", tt.body, code, ok, tt.code, tt.ok)
		}
	}
}

func TestAuthNeedsResponse(t *testing.T) {
	tests := []struct {
		code uint32
		want bool
	}{
		{pgwire.AuthOK, false},
		{pgwire.AuthCleartextPassword, true},
		{pgwire.AuthMD5Password, true},
		{pgwire.AuthGSS, true},
		{pgwire.AuthGSSContinue, true},
		{pgwire.AuthSSPI, true},
		{pgwire.AuthSASL, true},
		{pgwire.AuthSASLContinue, true},
		{pgwire.AuthSASLFinal, false},
	}
	for _, tt := range tests {
		if got := pgwire.AuthNeedsResponse(tt.code); got != tt.want {
			t.Errorf("AuthNeedsResponse(%d) = %v; want %v", tt.code, got, tt.want)
		}
	}
}

// TestReadOnAfterTimeout: a deadline's error is returned but not kept, so
// the caller can read on once more bytes arrive; here the deadline falls
// in the middle of a message.
func TestReadOnAfterTimeout(t *testing.T) {
	c, peer := net.Pipe()
	defer c.Close()
	defer peer.Close()
	r := pgwire.NewReader(c, 0)
	msg, _ := (&pgproto3.Query{String: "SELECT 1"}).Encode(nil)
	go peer.Write(msg[:3])
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := r.Next(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Next past the deadline: %v; want os.ErrDeadlineExceeded", err)
	}
	c.SetReadDeadline(time.Time{})
	go peer.Write(msg[3:])
	m, err := r.Next()
	if err != nil {
		t.Fatalf("Next after the timeout: %v", err)
	}
	if m.Type != 'Q' || string(m.Body) != "SELECT 1\x00" {
		t.Errorf("Next after the timeout = %c %q; want Q \"SELECT 1\\x00\"", m.Type, m.Body)
	}
}
