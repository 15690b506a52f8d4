package tree

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/nightjar-backup/nightjar/plugins/internal/sqlitecopy"
)

// SQLite modes: what the tree source does with live SQLite databases it finds (by header).
const (
	// SQLiteSnapshot stores one committed state of each database and leaves its -wal, -shm
	// and -journal files out: a WAL database is read straight into the archive under a read
	// transaction, any other copied in scratch first. The default.
	SQLiteSnapshot = "snapshot"
	// SQLiteCopy is SQLiteSnapshot with every database copied in scratch first, so its read
	// transaction lasts for the local copy alone rather than for as long as the pipeline
	// takes to store the database (a WAL cannot be checkpointed past it meanwhile).
	SQLiteCopy = "copy"
	// SQLiteRaw stores database files as they are read, like any file; a database written
	// during the run may be stored torn.
	SQLiteRaw = "raw"
	// SQLiteSkip leaves databases and their -wal, -shm and -journal files out, with a warning.
	SQLiteSkip = "skip"
)

// sidecarSuffixes are the files SQLite keeps beside a database.
var sidecarSuffixes = []string{"-wal", "-shm", "-journal"}

// WithSQLite sets how databases inside the tree are stored (SQLiteSnapshot, SQLiteCopy,
// SQLiteRaw or SQLiteSkip) and the scratch folder for the copies.
func (s *Source) WithSQLite(mode, scratchDir string) (*Source, error) {
	switch mode {
	case SQLiteSnapshot, SQLiteCopy, SQLiteRaw, SQLiteSkip:
	case "":
		mode = SQLiteSnapshot
	default:
		return nil, fmt.Errorf("sqlite: expected snapshot, copy, raw or skip, got %q", mode)
	}
	if scratchDir == "" {
		scratchDir = os.TempDir()
	}
	c := *s
	c.sqlite, c.scratch = mode, scratchDir
	return &c, nil
}

// WithIntegrity sets the check of each database stored with SQLiteSnapshot or SQLiteCopy:
// LevelOff (the default), LevelQuick or LevelFull.
func (s *Source) WithIntegrity(level sqlitecopy.Level) *Source {
	c := *s
	c.check = level
	return &c
}

// sqliteStats records which files were handled as databases, for the manifest.
type sqliteStats struct {
	copied, skipped, sidecars, raw []string
}

func (st *sqliteStats) addMeta(meta map[string]string, mode string, check sqlitecopy.Level) {
	meta["sqlite"] = mode
	if mode == SQLiteSnapshot || mode == SQLiteCopy {
		meta["sqlite_integrity"] = string(check)
	}
	add := func(key string, names []string) {
		if len(names) == 0 {
			return
		}
		meta[key+"_count"] = strconv.Itoa(len(names))
		meta[key] = capList(names, 20)
	}
	add("sqlite_snapshot_files", st.copied)
	add("sqlite_skipped_files", st.skipped)
	add("sqlite_sidecars_left_out", st.sidecars)
	add("sqlite_stored_raw", st.raw)
}

func capList(names []string, n int) string {
	if len(names) > n {
		names = append(names[:n:n], fmt.Sprintf("... and %d more", len(names)-n))
	}
	return strings.Join(names, "\n")
}

// sidecarOf returns the database a -wal, -shm or -journal file belongs to.
func sidecarOf(p string) (string, bool) {
	for _, suf := range sidecarSuffixes {
		if strings.HasSuffix(p, suf) && len(p) > len(suf) {
			return strings.TrimSuffix(p, suf), true
		}
	}
	return "", false
}

// hasHeader reports whether the open file f starts with the SQLite header; it reads with
// ReadAt, so f's offset stays at the start.
func hasHeader(f *os.File) bool {
	var b [len(sqlitecopy.Header)]byte
	n, _ := f.ReadAt(b[:], 0)
	return n == len(b) && string(b[:]) == sqlitecopy.Header
}

func isDatabase(p string) bool {
	ok, err := sqlitecopy.IsDatabase(p)
	return err == nil && ok
}

// sqliteEntry stores a regular file that is a SQLite database, or a database's sidecar, as
// the mode says. handled is false when the file is to be stored as an ordinary file.
// f is the file, open and unread.
func (s *Source) sqliteEntry(ctx context.Context, tw *tarWriter, f *os.File, e entry, h *tar.Header, st *stats, buf []byte) (handled bool, err error) {
	if s.sqlite == SQLiteRaw {
		return false, nil
	}
	if db, ok := sidecarOf(e.abs); ok && isDatabase(db) {
		st.sqlite.sidecars = append(st.sqlite.sidecars, e.rel)
		return true, nil
	}
	// The smallest database file is one 512-byte page.
	if h.Size < 512 || !hasHeader(f) {
		return false, nil
	}
	if s.sqlite == SQLiteSkip {
		st.sqlite.skipped = append(st.sqlite.skipped, e.rel)
		s.log.Warn("leaving out a SQLite database (sqlite: skip)", "source", s.name, "path", e.abs)
		return true, nil
	}
	// While a database is read, the read-ahead opens no file (see keptFiles in sqlitecopy).
	st.dbCopy.Lock()
	err = fmt.Errorf("%w: sqlite: %s", sqlitecopy.ErrNoStream, s.sqlite)
	if s.sqlite == SQLiteSnapshot {
		var db *sqlitecopy.Stream
		if db, err = sqlitecopy.OpenStream(ctx, e.abs, 0); err == nil {
			err = s.streamDatabase(ctx, tw, db, e, h, st)
			st.dbCopy.Unlock()
			return true, err
		}
	}
	var snap *sqlitecopy.Snapshot
	if errors.Is(err, sqlitecopy.ErrNoStream) {
		// sqlite: copy, not a WAL database, or one the page copy cannot vouch for.
		s.log.Debug("copying a SQLite database to scratch", "source", s.name, "path", e.abs, "why", err)
		snap, err = sqlitecopy.Take(ctx, e.abs, s.scratch, sqlitecopy.Options{}, s.check)
	}
	st.dbCopy.Unlock()
	if errors.Is(err, sqlitecopy.ErrDamaged) || errors.Is(err, sqlitecopy.ErrNotDatabase) {
		// Not a usable database (damaged, or only its header looks right): it is stored
		// byte for byte like any file, so the backup still has what the disk had.
		st.sqlite.raw = append(st.sqlite.raw, e.rel)
		s.log.Warn("a file with a SQLite header could not be copied as a database; storing it as it is",
			"source", s.name, "path", e.abs, "err", err)
		return false, nil
	}
	if err != nil {
		return true, fmt.Errorf("SQLite database %s: %w (exclude it, or set `sqlite: raw` or `sqlite: skip` on the source)", e.abs, err)
	}
	defer func() {
		if rerr := snap.Remove(); rerr != nil {
			s.log.Warn("could not remove the scratch copy", "source", s.name, "path", snap.Path, "err", rerr)
		}
	}()
	cp, err := os.Open(snap.Path)
	if err != nil {
		return true, fmt.Errorf("copy of %s: %w", e.abs, err)
	}
	defer cp.Close()
	info, err := cp.Stat()
	if err != nil {
		return true, fmt.Errorf("copy of %s: %w", e.abs, err)
	}
	// The header keeps the database file's own mode, owner and mtime; only the size is the
	// copy's. An unchanged database gives an identical copy, so the tar stays identical.
	h.Size = info.Size()
	if err := s.writeHeader(tw, h, e.rel); err != nil {
		return true, err
	}
	if _, err := io.CopyBuffer(tw, cp, buf); err != nil {
		return true, fmt.Errorf("write %s: %w", e.rel, err)
	}
	st.sqlite.copied = append(st.sqlite.copied, e.rel)
	st.files++
	st.bytes += h.Size
	s.log.Debug("stored a consistent copy of a SQLite database", "source", s.name, "path", e.abs,
		"bytes", h.Size, "copy", snap.Duration)
	return true, nil
}

// streamDatabase stores the committed state db's read transaction holds, read straight from
// the database file and its WAL into the archive, while SQLite checks the same state beside
// it (sqlite_integrity; with it off the check returns at once). A database that fails the
// check has been stored already, page for page as its committed state is (what a copy
// would have stored as it is); it is named in the meta and the log, as a damaged copy is.
func (s *Source) streamDatabase(ctx context.Context, tw *tarWriter, db *sqlitecopy.Stream, e entry, h *tar.Header, st *stats) error {
	checkCtx, cancel := context.WithCancel(ctx)
	var checkErr error
	checked := make(chan struct{})
	go func() {
		defer close(checked)
		_, checkErr = db.Check(checkCtx, s.check)
	}()
	defer func() {
		cancel()
		<-checked
		if err := db.Close(); err != nil {
			s.log.Warn("could not close a SQLite database", "source", s.name, "path", e.abs, "err", err)
		}
	}()
	// The header keeps the database file's own mode, owner and mtime; only the size is the
	// committed state's. An unchanged database gives the same bytes, so the tar stays identical.
	h.Size = db.Size
	if err := s.writeHeader(tw, h, e.rel); err != nil {
		return err
	}
	if _, err := db.CopyTo(ctx, tw); err != nil {
		return fmt.Errorf("write %s: %w", e.rel, err)
	}
	<-checked
	switch {
	case errors.Is(checkErr, sqlitecopy.ErrDamaged):
		st.sqlite.raw = append(st.sqlite.raw, e.rel)
		s.log.Warn("a SQLite database failed its integrity check; its pages are stored as they are",
			"source", s.name, "path", e.abs, "sqlite_integrity", s.check, "err", checkErr)
	case checkErr != nil:
		return fmt.Errorf("SQLite database %s: %w", e.abs, checkErr)
	default:
		st.sqlite.copied = append(st.sqlite.copied, e.rel)
	}
	st.files++
	st.bytes += h.Size
	s.log.Debug("stored a consistent copy of a SQLite database", "source", s.name, "path", e.abs, "bytes", h.Size)
	return nil
}

// removeStaleSidecars removes the -wal, -shm and -journal files of a database just written
// over an existing one (restore --force): SQLite would replay a stale -wal into it.
func removeStaleSidecars(root *os.Root, name string) error {
	f, err := root.Open(name)
	if err != nil {
		return err
	}
	var b [len(sqlitecopy.Header)]byte
	_, rerr := io.ReadFull(f, b[:])
	f.Close()
	if rerr != nil || string(b[:]) != sqlitecopy.Header {
		return nil
	}
	for _, suf := range sidecarSuffixes {
		if err := root.Remove(name + suf); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove the stale %s: %w", name+suf, err)
		}
	}
	return nil
}
