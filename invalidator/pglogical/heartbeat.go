package pglogical

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// beatTimeout bounds one heartbeat query, connecting included.
const beatTimeout = 5 * time.Second

// beatKind is a job for the heartbeat goroutine.
type beatKind int

const (
	// beatMeasure takes t0 and then reads the WAL insert position.
	beatMeasure beatKind = iota
	// beatNudge makes the server flush its WAL soon.
	//
	// The walsender decodes only flushed WAL, and the WAL writer flushes
	// on its own only commits (asynchronous ones within about
	// 3×wal_writer_delay) and full pages. WAL of a transaction still open
	// — a session idle in transaction after writing — can stay unflushed
	// in a partial page for minutes; a heartbeat whose target lies past it
	// would wait as long. A non-transactional logical message marks the
	// WAL up to it for the WAL writer to flush, like an asynchronous
	// commit, without using a transaction ID; pgoutput does not send it
	// (we do not ask for messages).
	beatNudge
)

// beatResult is a heartbeat job's outcome.
type beatResult struct {
	kind   beatKind
	t0     time.Time
	target uint64 // beatMeasure: the end of the last WAL record after t0
	// snapshot: beatMeasure, which transactions were still invisible to
	// other sessions after t0 (visibility.go); taken before snapshotRead.
	snapshot     txSnapshot
	snapshotRead time.Time
	err          error
}

// heartbeats runs heartbeat jobs until ctx ends. It owns s.hb while it
// runs; the run goroutine waits for it before the next session.
func (s *Stream) heartbeats(ctx context.Context, jobs <-chan beatKind, results chan<- beatResult) {
	for {
		select {
		case <-ctx.Done():
			return
		case kind := <-jobs:
			res := s.heartbeat(ctx, kind)
			if res.err != nil {
				s.closeHeartbeatConn() // reconnect next time
			}
			results <- res // capacity 1, one job at a time: never blocks
		}
	}
}

// errPublicationAltered is a heartbeat's finding that the publication was
// altered since the stream's session began, even if it looks as before:
// changes sent meanwhile may have been left out. The session ends, and
// the next starts with a Reset.
var errPublicationAltered = errors.New("the publication was altered while the stream ran; changes in between may have gone unsent")

func (s *Stream) heartbeat(ctx context.Context, kind beatKind) beatResult {
	ctx, cancel := context.WithTimeout(ctx, beatTimeout)
	defer cancel()
	reused := s.hb != nil
	res := s.heartbeatOnce(ctx, kind)
	if res.err != nil && reused && ctx.Err() == nil {
		// The connection may have died since the last job (the server
		// restarted): try once more on a new one.
		s.closeHeartbeatConn()
		res = s.heartbeatOnce(ctx, kind)
	}
	return res
}

func (s *Stream) heartbeatOnce(ctx context.Context, kind beatKind) beatResult {
	res := beatResult{kind: kind}
	if s.hb == nil {
		if res.err = s.openHeartbeatConn(ctx); res.err != nil {
			return res
		}
	}
	if kind == beatNudge {
		_, res.err = queryRows(ctx, s.hb, "SELECT pg_catalog.pg_logical_emit_message(false, 'sqlcache', '')")
		return res
	}
	// Every transaction visible before t0 has its commit record before
	// the insert position read after t0. Not pg_current_wal_lsn(): that is
	// the write position, which misses asynchronous commits (visible
	// before their commit record is written).
	//
	// The same query reads the publication again: altered or dropped
	// while the stream runs (ALTER PUBLICATION … SET (publish = 'insert')),
	// it would leave changes unsent without a word from the server.
	res.t0 = time.Now()
	row, _, err := queryRow(ctx, s.hb, "SELECT pg_catalog.pg_current_wal_insert_lsn(), "+publicationColumns+
		", pg_catalog.txid_current_snapshot()::text"+
		" FROM (SELECT) x LEFT JOIN pg_catalog.pg_publication p ON p.pubname = "+quoteLiteral(s.cfg.Publication), 9)
	if err != nil {
		res.err = err
		return res
	}
	res.snapshotRead = time.Now()
	if res.snapshot, err = parseSnapshot(row[8]); err != nil {
		res.err = fmt.Errorf("txid_current_snapshot: %w", err)
		return res
	}
	if pub := publicationFrom(row[1:8]); pub.missing {
		res.err = missingPublication(s.cfg.Publication, " any more")
		return res
	} else if res.err = pub.problem(s.cfg.Publication); res.err != nil {
		return res
	} else if s.pubVersion != "" && pub.version != s.pubVersion {
		// Altered and altered back between two heartbeats (publish
		// less, then all again): pgoutput filtered the changes between
		// by the publication as it was then, and dropped some.
		res.err = errPublicationAltered
		return res
	} else {
		s.pubVersion = pub.version
	}
	insert, err := parseLSN(row[0])
	if err != nil {
		res.err = fmt.Errorf("pg_current_wal_insert_lsn: %w", err)
		return res
	}
	res.target = lastRecordEnd(insert, s.hbBlockSize)
	return res
}

// openHeartbeatConn connects with the DSN as given and reads the WAL block
// size.
func (s *Stream) openHeartbeatConn(ctx context.Context) error {
	conn, err := connect(ctx, s.cfg.DSN, false)
	if err != nil {
		return err
	}
	row, _, err := queryRow(ctx, conn, "SELECT current_setting('wal_block_size')", 1)
	if err == nil {
		s.hbBlockSize, err = strconv.ParseUint(row[0], 10, 64)
	}
	if err != nil {
		closeConn(conn)
		return fmt.Errorf("wal_block_size: %w", err)
	}
	s.hb = conn
	return nil
}

func (s *Stream) closeHeartbeatConn() {
	if s.hb != nil {
		closeConn(s.hb)
		s.hb = nil
	}
}
