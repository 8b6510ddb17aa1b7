package pglogical

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
)

// slowSlotCreation is when to say that creating a slot is waiting:
// CREATE_REPLICATION_SLOT waits for every transaction running when it
// started to end, however long that takes.
const slowSlotCreation = 5 * time.Second

// slot is the replication slot a session streams from.
type slot struct {
	name      string
	temporary bool
	start     uint64 // where to start streaming; 0 for where the slot is
	created   bool   // changes before it were not kept for us: Reset
}

// reset tells the Handler that changes may have been missed; the next
// session need not again (resetNext).
func (s *Stream) reset(why string, sl slot) {
	s.cfg.Handler.Reset(s.cfg.Database)
	s.updateStatus(func(st *Status) { st.Resets++ })
	s.log.Debug(why, "slot", sl.name)
	s.resetNext = false
}

// session runs one replication connection: connect, set up, Reset if
// needed, stream. It reports whether the stream became fresh, and why it
// ended; nil after Close.
func (s *Stream) session() (wasFresh bool, err error) {
	conn, err := connect(s.ctx, s.cfg.DSN, true)
	if err != nil {
		return false, err
	}
	defer closeConn(conn)
	s.lastSnap = txSnapshot{}
	sl, err := s.setup(conn)
	if err != nil {
		return false, err
	}
	if sl.created {
		s.reset("reset: changes before the new slot may have been missed", sl)
	}
	if err := s.startReplication(conn, sl); err != nil {
		return false, err
	}
	s.updateStatus(func(st *Status) {
		st.Connected, st.Slot, st.Temporary = true, sl.name, sl.temporary
		if s.streamed {
			st.Reconnects++
		}
	})
	s.streamed = true
	s.log.Info("change stream connected", "slot", sl.name, "temporary", sl.temporary, "created", sl.created)
	return s.replicate(conn, sl)
}

// closeConn closes conn, sending Terminate so that the server ends the
// walsender (and drops a temporary slot) at once.
func closeConn(conn *pgconn.PgConn) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn.Close(ctx)
}

// setup checks the server, makes sure of the publication and gets a slot.
func (s *Stream) setup(conn *pgconn.PgConn) (slot, error) {
	ctx, cancel := context.WithTimeout(s.ctx, checkTimeout)
	defer cancel()
	sys, err := pglogrepl.IdentifySystem(ctx, conn)
	if err != nil {
		return slot{}, fmt.Errorf("IDENTIFY_SYSTEM: %w", err)
	}
	if err := checkWALLevel(ctx, conn); err != nil {
		return slot{}, err
	}
	if err := s.ensurePublication(ctx, conn); err != nil {
		return slot{}, err
	}
	if s.cfg.Slot == "" {
		return s.createSlot(conn, temporarySlotName(), true)
	}
	if !validSlotName.MatchString(s.cfg.Slot) {
		return slot{}, badSlotName(s.cfg.Slot)
	}
	return s.permanentSlot(ctx, conn, sys.DBName)
}

// ensurePublication checks the publication, creating it if it is missing
// and that is allowed.
func (s *Stream) ensurePublication(ctx context.Context, conn *pgconn.PgConn) error {
	name := s.cfg.Publication
	pub, err := inspectPublication(ctx, conn, name)
	if err != nil {
		return err
	}
	// The version the session's heartbeats compare with: set here, before
	// the slot, or by the first heartbeat for one created now.
	s.pubVersion = pub.version
	if !pub.missing {
		return pub.problem(name)
	}
	r, err := currentRole(ctx, conn)
	if err != nil {
		return err
	}
	if err := canCreatePublication(ctx, conn, s.cfg, r); err != nil {
		return err
	}
	_, err = queryRows(ctx, conn, createPublicationSQL(quoteIdent(name)))
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		s.log.Info("created publication", "publication", name)
		return nil
	case errors.As(err, &pgErr) && pgErr.Code == "42710": // duplicate_object: created meanwhile
		pub, err = inspectPublication(ctx, conn, name)
		if err != nil {
			return err
		}
		return pub.problem(name)
	case errors.As(err, &pgErr) && pgErr.Code == "42501": // insufficient_privilege
		return &SetupError{Problem: fmt.Sprintf("publication %q does not exist and role %q may not create it", name, r.name),
			Fix: "as a superuser: " + createPublicationSQL(showIdent(name)), Err: err}
	}
	return fmt.Errorf("creating publication %q: %w", name, err)
}

// temporarySlotName returns sqlcache_ and 8 random hex digits.
func temporarySlotName() string {
	var b [4]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return "sqlcache_" + hex.EncodeToString(b[:])
}

// permanentSlot reuses the named slot, or creates it if it is missing or
// can no longer be used.
func (s *Stream) permanentSlot(ctx context.Context, conn *pgconn.PgConn, db string) (slot, error) {
	name := s.cfg.Slot
	st, err := inspectSlot(ctx, conn, name)
	if err != nil {
		return slot{}, err
	}
	if st.missing {
		if s.slotApplied != 0 {
			s.log.Warn("permanent replication slot disappeared; creating it again", "slot", name)
		}
		return s.createSlot(conn, name, false)
	}
	if err := st.problem(name, db); err != nil {
		return slot{}, err
	}
	switch {
	case st.walStatus == "lost":
		s.log.Warn("permanent replication slot lost the WAL it needs (max_slot_wal_keep_size); creating it again", "slot", name)
	case s.recreateSlot:
		s.log.Warn("permanent replication slot stuck on a publication that was dropped; creating it again", "slot", name)
	default:
		// The slot only moves when we confirm positions; if it is past
		// what we applied, someone else consumed changes we needed.
		sl := slot{name: name}
		if s.slotApplied != 0 && st.confirmedFlush > s.slotApplied {
			s.log.Warn("permanent replication slot was advanced by another client; resetting", "slot", name)
			sl.created = true
		}
		return sl, nil
	}
	if err := pglogrepl.DropReplicationSlot(ctx, conn, name, pglogrepl.DropReplicationSlotOptions{}); err != nil {
		return slot{}, fmt.Errorf("dropping replication slot %q: %w", name, err)
	}
	return s.createSlot(conn, name, false)
}

// createSlot creates a slot, waiting as long as the server needs (until
// Close): it waits for running transactions to end.
func (s *Stream) createSlot(conn *pgconn.PgConn, name string, temporary bool) (slot, error) {
	slow := time.AfterFunc(slowSlotCreation, func() {
		s.log.Warn("creating the replication slot waits for transactions running on the server to end", "slot", name)
	})
	res, err := pglogrepl.CreateReplicationSlot(s.ctx, conn, name, "pgoutput", pglogrepl.CreateReplicationSlotOptions{
		Temporary:      temporary,
		SnapshotAction: "NOEXPORT_SNAPSHOT",
		Mode:           pglogrepl.LogicalReplication,
	})
	slow.Stop()
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "53400" { // configuration_limit_exceeded
		return slot{}, noFreeSlot(0, err)
	}
	if err != nil {
		return slot{}, fmt.Errorf("creating replication slot %q: %w", name, err)
	}
	start, err := parseLSN(res.ConsistentPoint)
	if err != nil {
		return slot{}, fmt.Errorf("replication slot %q: consistent point: %w", name, err)
	}
	s.recreateSlot = false
	s.slotApplied = 0
	return slot{name: name, temporary: temporary, start: start, created: true}, nil
}

// startReplication starts streaming from sl.
func (s *Stream) startReplication(conn *pgconn.PgConn, sl slot) error {
	ctx, cancel := context.WithTimeout(s.ctx, checkTimeout)
	defer cancel()
	err := pglogrepl.StartReplication(ctx, conn, sl.name, pglogrepl.LSN(sl.start), pglogrepl.StartReplicationOptions{
		Mode: pglogrepl.LogicalReplication,
		PluginArgs: []string{
			"proto_version '1'",
			"publication_names " + replicationString(quoteIdent(s.cfg.Publication)),
		},
	})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "55000" && strings.Contains(pgErr.Message, "can no longer get changes") {
		// The slot was invalidated (max_slot_wal_keep_size): only a new
		// one helps.
		s.recreateSlot = true
	}
	if err != nil {
		return fmt.Errorf("START_REPLICATION: %w", err)
	}
	return nil
}
