// Package sqlitecopy makes consistent copies of live SQLite databases and checks them. It is
// shared by the sqlite source and the tree source (plugins never import each other).
//
// A copy is made in one read transaction on the source, so it is one committed state of the
// database and, in WAL mode, writers are never blocked: by copying the file and the WAL's
// committed frames (pages.go), by SQLite's online backup API in a single step where that
// cannot vouch for the copy, or with VACUUM INTO. The source is opened read-only: nothing is
// checkpointed and nothing in it is written.
package sqlitecopy

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nightjar-backup/nightjar/core"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Header is the first 16 bytes of every SQLite 3 database file.
const Header = "SQLite format 3\x00"

// Method is how a copy is made.
type Method string

const (
	// MethodBackup makes a page-for-page copy: of the file and the WAL under a read
	// transaction, or with the online backup API (sqlite3_backup_step(-1)).
	MethodBackup Method = "backup"
	// MethodVacuum uses VACUUM INTO: a rebuilt, defragmented copy.
	MethodVacuum Method = "vacuum"
)

// Level is how thoroughly a copy is checked.
type Level string

const (
	LevelFull  Level = "full"  // PRAGMA integrity_check
	LevelQuick Level = "quick" // PRAGMA quick_check
	LevelOff   Level = "off"
)

// DefaultBusyTimeout bounds how long a copy waits for a lock held by another process.
const DefaultBusyTimeout = 60 * time.Second

// Options controls Copy.
type Options struct {
	Method      Method        // default MethodBackup
	BusyTimeout time.Duration // default DefaultBusyTimeout
}

// Info describes the copied database.
type Info struct {
	PageSize      int64
	PageCount     int64
	JournalMode   string // the source's journal mode ("wal", "delete", ...)
	UserVersion   int64
	SQLiteVersion string // the library that made the copy
	CopyMode      string // how the copy was made: CopyPages, CopyBackupAPI or CopyVacuum
	WhyBackupAPI  string // with CopyBackupAPI: why the page copy could not be used
}

// How a copy was made (Info.CopyMode).
const (
	CopyPages     = "pages"      // the file and the WAL's committed frames, under a read transaction
	CopyBackupAPI = "backup_api" // sqlite3_backup_step(-1)
	CopyVacuum    = "vacuum"     // VACUUM INTO
)

// Size is the database size in bytes (page size times page count).
func (i Info) Size() int64 { return i.PageSize * i.PageCount }

// Meta renders the info for a manifest.
func (i Info) Meta() map[string]string {
	return map[string]string{
		"page_size":      strconv.FormatInt(i.PageSize, 10),
		"page_count":     strconv.FormatInt(i.PageCount, 10),
		"journal_mode":   i.JournalMode,
		"user_version":   strconv.FormatInt(i.UserVersion, 10),
		"sqlite_version": i.SQLiteVersion,
		"copy_mode":      i.CopyMode,
	}
}

// ErrNotDatabase is wrapped by errors about files that are not SQLite databases.
var ErrNotDatabase = errors.New("not a SQLite database")

// ErrLocked is wrapped by errors about a database that stayed locked past the busy timeout.
var ErrLocked = errors.New("database stayed locked")

// ErrDamaged is wrapped by errors about a copy that failed its integrity check.
var ErrDamaged = errors.New("integrity check failed")

// IsDatabase reports whether the file at path starts with the SQLite 3 header.
func IsDatabase(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var b [len(Header)]byte
	if _, err := io.ReadFull(f, b[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return false, nil
		}
		return false, err
	}
	return string(b[:]) == Header, nil
}

// CheckSource returns a clear error when path does not exist, is not a regular file or is
// not a SQLite database.
func CheckSource(path string) error {
	info, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("database %s does not exist", path)
	}
	if err != nil {
		return fmt.Errorf("database %s: %w", path, err)
	}
	if !info.Mode().IsRegular() {
		return fmt.Errorf("database %s: %w: not a regular file", path, ErrNotDatabase)
	}
	ok, err := IsDatabase(path)
	if err != nil {
		return fmt.Errorf("database %s: %w", path, err)
	}
	if !ok {
		return fmt.Errorf("%s: %w (it does not start with the header %q)", path, ErrNotDatabase, strings.TrimSuffix(Header, "\x00"))
	}
	return nil
}

// uri builds a SQLite URI filename for path with query parameters.
func uri(path string, params url.Values) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	u := url.URL{Scheme: "file", Path: abs, RawQuery: params.Encode()}
	// url.URL renders "file:///abs": SQLite accepts an empty authority.
	return u.String(), nil
}

func openSource(ctx context.Context, path string, busy time.Duration) (*sql.DB, *sql.Conn, error) {
	if busy <= 0 {
		busy = DefaultBusyTimeout
	}
	dsn, err := uri(path, url.Values{
		"mode":    {"ro"},
		"_pragma": {fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds())},
	})
	if err != nil {
		return nil, nil, err
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, nil, err
	}
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return db, conn, nil
}

// openImmutable opens a database that no other process writes (our own copy) read-only,
// without locks and without creating -wal or -shm files.
func openImmutable(path string) (*sql.DB, error) {
	dsn, err := uri(path, url.Values{"mode": {"ro"}, "immutable": {"1"}})
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

// isBusy reports whether err is SQLITE_BUSY or SQLITE_LOCKED (any extended code).
func isBusy(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		c := se.Code() & 0xff
		return c == sqlite3.SQLITE_BUSY || c == sqlite3.SQLITE_LOCKED
	}
	return false
}

// isReadonly reports whether err is SQLITE_READONLY with any extended code.
func isReadonly(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_READONLY
}

// isNotDB reports whether err is SQLITE_NOTADB (a header that looks right over a damaged
// or encrypted file).
func isNotDB(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_NOTADB
}

func describeErr(path string, busy time.Duration, err error) error {
	switch {
	case isBusy(err):
		return fmt.Errorf("database %s: %w for %s (another process holds a lock that blocks readers; "+
			"retry later, or raise busy_timeout): %v", path, ErrLocked, busy, err)
	case isNotDB(err):
		return fmt.Errorf("database %s: %w: %v", path, ErrNotDatabase, err)
	case isReadonly(err):
		// nightjar only ever reads: a read-only connection cannot roll back the hot journal
		// of an interrupted write, nor recover a WAL file. The database's own writer does.
		return fmt.Errorf("database %s needs recovery that a read-only reader cannot do (an interrupted write left a "+
			"hot journal or WAL to recover); open it once with its writer, or with `sqlite3 %s 'PRAGMA quick_check'`, then retry: %w",
			path, path, err)
	}
	return fmt.Errorf("database %s: %w", path, err)
}

// Inspect reads the source's page size, page count, journal mode and user_version without
// copying it.
func Inspect(ctx context.Context, path string, busy time.Duration) (Info, error) {
	if err := CheckSource(path); err != nil {
		return Info{}, err
	}
	db, conn, err := openSource(ctx, path, busy)
	if err != nil {
		return Info{}, describeErr(path, busy, err)
	}
	defer db.Close()
	defer conn.Close()
	info, err := readInfo(ctx, conn)
	if err != nil {
		return Info{}, describeErr(path, busy, err)
	}
	return info, nil
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func readInfo(ctx context.Context, q querier) (Info, error) {
	var info Info
	for _, p := range []struct {
		sql string
		dst any
	}{
		{"PRAGMA page_size", &info.PageSize},
		{"PRAGMA page_count", &info.PageCount},
		{"PRAGMA journal_mode", &info.JournalMode},
		{"PRAGMA user_version", &info.UserVersion},
		{"SELECT sqlite_version()", &info.SQLiteVersion},
	} {
		if err := q.QueryRowContext(ctx, p.sql).Scan(p.dst); err != nil {
			return Info{}, fmt.Errorf("%s: %w", p.sql, err)
		}
	}
	return info, nil
}

// backuper is what the driver's connection offers for the online backup API.
type backuper interface {
	NewBackup(dstURI string) (*sqlite.Backup, error)
}

// Copy makes a consistent copy of the database at src in the new file dst (which must not
// exist; its folder must). Before copying it checks that dst's file system has room for
// the database. On error dst (and its journal) are removed.
func Copy(ctx context.Context, src, dst string, opt Options) (info Info, err error) {
	if opt.Method == "" {
		opt.Method = MethodBackup
	}
	if opt.BusyTimeout <= 0 {
		opt.BusyTimeout = DefaultBusyTimeout
	}
	if err := CheckSource(src); err != nil {
		return Info{}, err
	}
	if _, err := os.Lstat(dst); err == nil {
		return Info{}, fmt.Errorf("copy %s: %s already exists", src, dst)
	}
	var kept keptFiles
	defer kept.closeAll() // after the connection: deferred calls run last first
	db, conn, err := openSource(ctx, src, opt.BusyTimeout)
	if err != nil {
		return Info{}, describeErr(src, opt.BusyTimeout, err)
	}
	defer db.Close()
	defer conn.Close()
	info, err = readInfo(ctx, conn)
	if err != nil {
		return Info{}, describeErr(src, opt.BusyTimeout, err)
	}
	if err := checkFree(filepath.Dir(dst), info.Size()); err != nil {
		return Info{}, fmt.Errorf("copy %s: %w", src, err)
	}
	defer func() {
		if err != nil {
			removeDB(dst)
		}
	}()
	switch opt.Method {
	case MethodBackup:
		info.CopyMode, info.WhyBackupAPI, err = backup(ctx, conn, &kept, src, dst)
	case MethodVacuum:
		info.CopyMode = CopyVacuum
		_, err = conn.ExecContext(ctx, "VACUUM INTO ?", dst)
	default:
		return Info{}, fmt.Errorf("copy %s: unknown method %q (expected backup or vacuum)", src, opt.Method)
	}
	if err != nil {
		return Info{}, describeErr(src, opt.BusyTimeout, fmt.Errorf("%s copy to %s: %w", opt.Method, dst, err))
	}
	// The copy's own numbers are the view that was copied; the source may have moved on.
	copied, err := readCopyInfo(ctx, dst)
	if err != nil {
		return Info{}, fmt.Errorf("copy %s: read the copy %s: %w", src, dst, err)
	}
	info.PageSize, info.PageCount, info.UserVersion = copied.PageSize, copied.PageCount, copied.UserVersion
	return info, nil
}

// backup copies src to dst with copyPages, or where that cannot vouch for the copy, with
// the online backup API. It returns which of the two made the copy, and why not the first.
func backup(ctx context.Context, conn *sql.Conn, kept *keptFiles, src, dst string) (mode, why string, err error) {
	err = copyPages(ctx, conn, kept, src, dst)
	if !errors.Is(err, errUsePager) {
		return CopyPages, "", err
	}
	removeDB(dst)
	return CopyBackupAPI, err.Error(), backupAPI(ctx, conn, dst)
}

func backupAPI(ctx context.Context, conn *sql.Conn, dst string) error {
	// The destination is scratch space: no journal and no fsyncs are needed while it is
	// written, since a failed copy is deleted, not recovered.
	dstURI, err := uri(dst, url.Values{"_pragma": {"synchronous(off)"}})
	if err != nil {
		return err
	}
	return conn.Raw(func(dc any) error {
		b, ok := dc.(backuper)
		if !ok {
			return fmt.Errorf("the SQLite driver's connection (%T) has no online backup API", dc)
		}
		bk, err := b.NewBackup(dstURI)
		if err != nil {
			return fmt.Errorf("start backup: %w", err)
		}
		// One step: one read transaction over the whole database, so the copy is a single
		// committed state. Copying in small steps restarts whenever another connection
		// commits, and may never finish on a busy database.
		_, stepErr := bk.Step(-1)
		finErr := bk.Finish()
		if stepErr != nil {
			return stepErr
		}
		if finErr != nil {
			return fmt.Errorf("finish backup: %w", finErr)
		}
		return ctx.Err()
	})
}

func readCopyInfo(ctx context.Context, path string) (Info, error) {
	db, err := openImmutable(path)
	if err != nil {
		return Info{}, err
	}
	defer db.Close()
	return readInfo(ctx, db)
}

// removeDB removes a database file and its journal files.
func removeDB(path string) {
	for _, suffix := range []string{"", "-journal", "-wal", "-shm"} {
		os.Remove(path + suffix)
	}
}

// checkFree fails when dir's file system has less than need bytes available.
func checkFree(dir string, need int64) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("scratch folder %s: %w", dir, err)
	}
	avail := int64(st.Bavail) * int64(st.Bsize)
	// Room for the copy plus a little for the file system's own blocks.
	if want := need + need/64 + 1<<20; avail < want {
		return fmt.Errorf("scratch folder %s has %s free, the copy needs about %s; set scratch_dir to a folder with more room",
			dir, core.HumanBytes(avail), core.HumanBytes(want))
	}
	return nil
}

// CheckResult is the outcome of an integrity check.
type CheckResult struct {
	Level    Level
	Result   string // "ok", the first problems found, or "skipped"
	Duration time.Duration
}

// Meta renders the result for a manifest.
func (r CheckResult) Meta() map[string]string {
	return map[string]string{
		"integrity":         r.Result,
		"integrity_check":   string(r.Level),
		"integrity_seconds": strconv.FormatFloat(r.Duration.Seconds(), 'f', 3, 64),
	}
}

// maxProblems bounds how many problems a failed check reports.
const maxProblems = 10

// Check runs PRAGMA integrity_check (or quick_check) on a database that no other process
// writes (a copy). A database with problems returns an error wrapping ErrDamaged, and the
// result names the first problems.
func Check(ctx context.Context, path string, level Level) (CheckResult, error) {
	res, pragma, err := checkPragma(level)
	if pragma == "" || err != nil {
		return res, err
	}
	ok, err := IsDatabase(path)
	if err != nil {
		return res, fmt.Errorf("check %s: %w", path, err)
	}
	if !ok {
		return res, fmt.Errorf("check %s: %w: %w (bad header)", path, ErrDamaged, ErrNotDatabase)
	}
	db, err := openImmutable(path)
	if err != nil {
		return res, fmt.Errorf("check %s: %w", path, err)
	}
	defer db.Close()
	return runCheck(ctx, db, res, pragma, path)
}

// checkPragma returns the pragma that checks at level, "" (and a skipped result) for
// LevelOff.
func checkPragma(level Level) (CheckResult, string, error) {
	switch level {
	case LevelOff:
		return CheckResult{Level: level, Result: "skipped"}, "", nil
	case LevelFull, "":
		return CheckResult{Level: LevelFull}, "integrity_check", nil
	case LevelQuick:
		return CheckResult{Level: level}, "quick_check", nil
	}
	return CheckResult{Level: level}, "", fmt.Errorf("unknown integrity level %q (expected full, quick or off)", level)
}

type rowsQuerier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// runCheck runs the check pragma on q; path names the database in errors.
func runCheck(ctx context.Context, q rowsQuerier, res CheckResult, pragma, path string) (CheckResult, error) {
	start := time.Now()
	rows, err := q.QueryContext(ctx, fmt.Sprintf("PRAGMA %s(%d)", pragma, maxProblems))
	if err != nil {
		if ctx.Err() != nil {
			return res, fmt.Errorf("check %s: %w", path, ctx.Err())
		}
		if isNotDB(err) {
			return res, fmt.Errorf("check %s: %w: %v", path, ErrDamaged, err)
		}
		return res, fmt.Errorf("check %s: %w", path, err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return res, fmt.Errorf("check %s: %w", path, err)
		}
		lines = append(lines, s)
	}
	if err := rows.Err(); err != nil {
		if ctx.Err() != nil { // interrupted, not damaged
			return res, fmt.Errorf("check %s: %w", path, ctx.Err())
		}
		// A damaged file can make the check itself fail (SQLITE_CORRUPT): that is damage.
		return res, fmt.Errorf("check %s: %w: %v", path, ErrDamaged, err)
	}
	res.Duration = time.Since(start)
	res.Result = strings.Join(lines, "; ")
	if len(lines) != 1 || lines[0] != "ok" {
		return res, fmt.Errorf("check %s: %w: %s", path, ErrDamaged, res.Result)
	}
	return res, nil
}
