package sqlitecopy

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// ErrNoStream says a database cannot be streamed: the page copy cannot vouch for it (see
// pages.go). Take a copy with Take instead, which falls back to the backup API.
var ErrNoStream = errUsePager

// Stream is a read transaction on a live database whose committed state CopyTo writes
// out as a database file, with no copy in scratch space: the page copy's file and WAL
// frames go straight to the writer. Only WAL databases are streamed, so writers are never
// held off; a checkpoint cannot pass the transaction's state until Close, so the WAL may
// grow meanwhile.
//
// Check may run on another goroutine while CopyTo runs. Close after both have returned.
// As with Copy, no other SQLite connection of this process may have the database open
// until Close (see keptFiles).
type Stream struct {
	Size int64 // the bytes CopyTo writes
	Info Info  // PageCount is that of the state CopyTo writes

	src  string
	db   *sql.DB
	conn *sql.Conn
	kept keptFiles
	plan *pagePlan
	open bool // the transaction
}

// OpenStream begins a read transaction on the database at src and plans its page copy.
// An error wrapping ErrNoStream means the page copy cannot vouch for this database; one
// wrapping ErrNotDatabase, that it is not a database SQLite can read.
func OpenStream(ctx context.Context, src string, busy time.Duration) (_ *Stream, err error) {
	if err := CheckSource(src); err != nil {
		return nil, err
	}
	if busy <= 0 {
		busy = DefaultBusyTimeout
	}
	s := &Stream{src: src}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.db, s.conn, err = openSource(ctx, src, busy); err != nil {
		return nil, describeErr(src, busy, err)
	}
	if err := beginRead(ctx, s.conn); err != nil {
		return nil, describeErr(src, busy, err)
	}
	s.open = true
	if s.Info, err = readInfo(ctx, s.conn); err != nil {
		return nil, describeErr(src, busy, err)
	}
	if !strings.EqualFold(s.Info.JournalMode, "wal") {
		// Its shared lock would hold writers off for as long as the stream is read; a
		// copy holds it for the copy alone.
		return nil, fmt.Errorf("database %s: %w: journal mode %s, not wal", src, ErrNoStream, s.Info.JournalMode)
	}
	if s.plan, err = planPages(ctx, s.conn, &s.kept, src); err != nil {
		return nil, describeErr(src, busy, fmt.Errorf("page copy: %w", err))
	}
	s.Size = s.plan.size
	s.Info.CopyMode = CopyPages
	if s.plan.pageSize > 0 {
		// The plan may be of a state committed just after the transaction began (pages.go).
		s.Info.PageCount = s.plan.size / s.plan.pageSize
	}
	return s, nil
}

// CopyTo writes the database file to w, Size bytes; call it once.
func (s *Stream) CopyTo(ctx context.Context, w io.Writer) (int64, error) {
	n, err := s.plan.writeTo(ctx, w)
	if err != nil {
		return n, fmt.Errorf("stream %s: %w", s.src, err)
	}
	return n, nil
}

// Check runs the integrity check at level on the transaction's state (through SQLite, so
// it reads the database a second time, from the page cache as a rule). A database with
// problems returns an error wrapping ErrDamaged.
func (s *Stream) Check(ctx context.Context, level Level) (CheckResult, error) {
	res, pragma, err := checkPragma(level)
	if pragma == "" || err != nil {
		return res, err
	}
	return runCheck(ctx, s.conn, res, pragma, s.src)
}

// Close ends the transaction and closes the database; then the files the plan read.
func (s *Stream) Close() error {
	var err error
	if s.open {
		_, err = s.conn.ExecContext(context.Background(), "ROLLBACK")
		s.open = false
	}
	if s.conn != nil {
		err = errors.Join(err, s.conn.Close())
	}
	if s.db != nil {
		err = errors.Join(err, s.db.Close())
	}
	s.kept.closeAll()
	s.conn, s.db = nil, nil
	if err != nil {
		return fmt.Errorf("close %s: %w", s.src, err)
	}
	return nil
}
