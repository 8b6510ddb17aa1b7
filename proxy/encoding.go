package proxy

import (
	"strings"

	"golang.org/x/text/encoding/charmap"
)

// clientEncoding is how sqlcache reads a session's statement texts in a
// client encoding other than UTF8 and SQL_ASCII, which PostgreSQL
// converts to its server encoding before parsing.
type clientEncoding struct {
	name string
	// charmap converts a single-byte encoding, whose non-ASCII bytes are
	// each one character; nil for a multibyte one (unreadable).
	charmap *charmap.Charmap
}

// singleByte maps PostgreSQL's names of single-byte encodings to their
// charmaps.
var singleByte = map[string]*charmap.Charmap{
	"LATIN1": charmap.ISO8859_1, "LATIN2": charmap.ISO8859_2, "LATIN3": charmap.ISO8859_3,
	"LATIN4": charmap.ISO8859_4, "LATIN5": charmap.ISO8859_9, "LATIN6": charmap.ISO8859_10,
	"LATIN7": charmap.ISO8859_13, "LATIN8": charmap.ISO8859_14, "LATIN9": charmap.ISO8859_15,
	"LATIN10": charmap.ISO8859_16, "ISO_8859_5": charmap.ISO8859_5, "ISO_8859_6": charmap.ISO8859_6,
	"ISO_8859_7": charmap.ISO8859_7, "ISO_8859_8": charmap.ISO8859_8,
	"WIN1250": charmap.Windows1250, "WIN1251": charmap.Windows1251, "WIN1252": charmap.Windows1252,
	"WIN1253": charmap.Windows1253, "WIN1254": charmap.Windows1254, "WIN1255": charmap.Windows1255,
	"WIN1256": charmap.Windows1256, "WIN1257": charmap.Windows1257, "WIN1258": charmap.Windows1258,
	"WIN866": charmap.CodePage866, "WIN874": charmap.Windows874, "KOI8R": charmap.KOI8R, "KOI8U": charmap.KOI8U,
}

// clientEncodingOf returns how to read texts in the client_encoding
// PostgreSQL reported (its canonical name), or nil for UTF8 and
// SQL_ASCII, whose texts are read as they are.
func clientEncodingOf(name string) *clientEncoding {
	name = strings.ToUpper(name)
	switch name {
	case "UTF8", "SQL_ASCII":
		return nil
	}
	return &clientEncoding{name: name, charmap: singleByte[name]}
}
