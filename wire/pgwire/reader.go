package pgwire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

const (
	// DefaultBufferSize is the initial buffer of a Reader.
	DefaultBufferSize = 16 << 10

	// DefaultInlineMax is the largest body a Reader returns whole; longer
	// bodies are streamed with CopyBody so a big DataRow or CopyData never
	// sits in memory at once.
	DefaultInlineMax = 256 << 10
)

// ErrBodyPending is returned by CopyBody when there is no streamed body to
// copy.
var ErrBodyPending = errors.New("pgwire: no streamed body pending")

// TooLargeError reports a message whose length field claims more than the
// Reader's limit. Nothing of that size was allocated.
type TooLargeError struct {
	Type  byte // 0 for a startup packet
	Len   int  // body length claimed
	Limit int
}

func (e *TooLargeError) Error() string {
	if e.Type == 0 {
		return fmt.Sprintf("startup packet of %d bytes exceeds the limit of %d", e.Len, e.Limit)
	}
	return fmt.Sprintf("message %q of %d bytes exceeds the limit of %d", e.Type, e.Len, e.Limit)
}

// InvalidLengthError reports a length field below its own 4 bytes.
type InvalidLengthError struct {
	Type byte // 0 for a startup packet
	Len  int32
}

func (e *InvalidLengthError) Error() string {
	if e.Type == 0 {
		return fmt.Sprintf("invalid startup packet length %d", e.Len)
	}
	return fmt.Sprintf("invalid length %d for message %q", e.Len, e.Type)
}

// Message is one framed message. Raw and Body alias the Reader's buffer and
// are valid only until the next call on the Reader.
type Message struct {
	Type byte
	Len  int    // body length, without the type byte and length field
	Raw  []byte // type, length and body as received; nil when streamed
	Body []byte // Raw[5:]; nil when streamed
}

// Streamed reports whether the body was too large to return whole and must be
// consumed with CopyBody (or is skipped by the next call to Next).
func (m Message) Streamed() bool { return m.Raw == nil }

// Header returns the 5-byte type and length prefix of m.
func (m Message) Header() [5]byte {
	var h [5]byte
	h[0] = m.Type
	binary.BigEndian.PutUint32(h[1:], uint32(m.Len+4))
	return h
}

// Reader frames messages from an io.Reader. It is roughly a bufio.Reader
// that only peeks and discards, so a message handed out is not copied. A
// Reader is not safe for concurrent use.
type Reader struct {
	rd        io.Reader
	buf       []byte
	r, w      int // buf[r:w] holds bytes read but not yet returned
	limit     int // largest body accepted; 0 means no limit
	inlineMax int
	pending   int // bytes of a streamed body not yet consumed
	err       error
}

// NewReader returns a Reader that rejects bodies over limit (0: no limit)
// before reading or allocating them.
func NewReader(rd io.Reader, limit int) *Reader {
	return &Reader{
		rd:        rd,
		buf:       make([]byte, DefaultBufferSize),
		limit:     limit,
		inlineMax: DefaultInlineMax,
	}
}

// SetInlineMax sets the largest body returned whole; larger ones stream.
func (r *Reader) SetInlineMax(n int) { r.inlineMax = n }

// Buffered returns the number of bytes read from the source but not yet
// returned.
func (r *Reader) Buffered() int { return r.w - r.r }

// Ready reports whether Next can return a message without reading from the
// source, i.e. without blocking. A relay flushes its output when it is not.
func (r *Reader) Ready() bool {
	if r.pending > 0 || r.w-r.r < 5 {
		return false
	}
	n := int(int32(binary.BigEndian.Uint32(r.buf[r.r+1:]))) - 4
	return n < 0 || n > r.inlineMax || r.w-r.r >= 5+n
}

// Next returns the next message. A body larger than the inline maximum comes
// back with Raw and Body nil; the caller streams it with CopyBody or it is
// discarded by the following Next. Errors are *TooLargeError,
// *InvalidLengthError, or those of the source (io.EOF at a message boundary,
// io.ErrUnexpectedEOF inside one).
func (r *Reader) Next() (Message, error) {
	if r.pending > 0 {
		if err := r.CopyBody(io.Discard); err != nil {
			return Message{}, err
		}
	}
	if err := r.fill(5); err != nil {
		if err == io.ErrUnexpectedEOF && r.w == r.r {
			err = io.EOF
		}
		return Message{}, err
	}
	typ := r.buf[r.r]
	l := int32(binary.BigEndian.Uint32(r.buf[r.r+1:]))
	if l < 4 {
		return Message{}, &InvalidLengthError{Type: typ, Len: l}
	}
	n := int(l) - 4
	if r.limit > 0 && n > r.limit {
		return Message{}, &TooLargeError{Type: typ, Len: n, Limit: r.limit}
	}
	if n > r.inlineMax {
		r.r += 5
		r.pending = n
		return Message{Type: typ, Len: n}, nil
	}
	if err := r.fill(5 + n); err != nil {
		return Message{}, err
	}
	raw := r.buf[r.r : r.r+5+n : r.r+5+n]
	r.r += 5 + n
	return Message{Type: typ, Len: n, Raw: raw, Body: raw[5:]}, nil
}

// CopyBody writes the body of the streamed message returned by the last Next
// to w, in pieces, without holding it whole.
func (r *Reader) CopyBody(w io.Writer) error {
	if r.pending == 0 {
		return ErrBodyPending
	}
	for r.pending > 0 {
		if r.r == r.w {
			if err := r.readMore(); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return err
			}
		}
		n := min(r.pending, r.w-r.r)
		chunk := r.buf[r.r : r.r+n]
		r.r += n
		r.pending -= n
		if _, err := w.Write(chunk); err != nil {
			// Keep framing intact for the caller even if w failed. The
			// failed chunk may have been the last one, and discard would
			// then report ErrBodyPending instead of err.
			if r.pending > 0 {
				if _, derr := r.discard(); derr != nil {
					return derr
				}
			}
			return err
		}
	}
	return nil
}

func (r *Reader) discard() (int, error) {
	n := r.pending
	err := r.CopyBody(io.Discard)
	return n, err
}

// ReadStartup reads one untyped startup packet (StartupMessage, SSLRequest,
// GSSENCRequest or CancelRequest) and returns it whole, length included.
// Packets over limit bytes are refused before they are read.
func (r *Reader) ReadStartup(limit int) ([]byte, error) {
	if err := r.fill(4); err != nil {
		if err == io.ErrUnexpectedEOF && r.w == r.r {
			err = io.EOF
		}
		return nil, err
	}
	l := int32(binary.BigEndian.Uint32(r.buf[r.r:]))
	if l < 8 {
		return nil, &InvalidLengthError{Len: l}
	}
	if int(l) > limit {
		return nil, &TooLargeError{Len: int(l), Limit: limit}
	}
	if err := r.fill(int(l)); err != nil {
		return nil, err
	}
	p := r.buf[r.r : r.r+int(l) : r.r+int(l)]
	r.r += int(l)
	return p, nil
}

// fill makes sure at least n unread bytes are buffered, growing the buffer
// only up to n (callers check n against the limits first).
func (r *Reader) fill(n int) error {
	for r.w-r.r < n {
		if r.r+n > len(r.buf) {
			r.compact(n)
		}
		if err := r.readMore(); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// compact moves unread bytes to the front, growing the buffer when n does
// not fit, and shrinking one grown by an earlier big message once it holds
// little.
func (r *Reader) compact(n int) {
	unread := r.w - r.r
	size := len(r.buf)
	if n > size {
		size = max(n, 2*size)
	} else if size > DefaultBufferSize && n <= DefaultBufferSize && unread <= DefaultBufferSize {
		size = DefaultBufferSize
	}
	if size != len(r.buf) {
		buf := make([]byte, size)
		copy(buf, r.buf[r.r:r.w])
		r.buf = buf
	} else {
		copy(r.buf, r.buf[r.r:r.w])
	}
	r.r, r.w = 0, unread
}

// readMore appends whatever one Read returns. It reports a sticky error.
func (r *Reader) readMore() error {
	if r.err != nil {
		return r.err
	}
	if r.r == r.w {
		r.r, r.w = 0, 0
	}
	if r.w == len(r.buf) {
		r.compact(r.w - r.r + 1)
	}
	for range 100 {
		n, err := r.rd.Read(r.buf[r.w:])
		r.w += n
		if err != nil {
			// An error ends the stream, except a timeout: past a
			// deadline the caller may read on.
			if !isTimeout(err) {
				r.err = err
			}
			if n > 0 {
				return nil
			}
			return err
		}
		if n > 0 {
			return nil
		}
	}
	r.err = io.ErrNoProgress
	return r.err
}

// isTimeout reports whether err is a deadline's (net.Error's Timeout).
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
