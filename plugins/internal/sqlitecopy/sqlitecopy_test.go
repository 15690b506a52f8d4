package sqlitecopy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nightjar-backup/nightjar/core/testenv"
	"github.com/nightjar-backup/nightjar/plugins/internal/sqlitecopy"
	"github.com/nightjar-backup/nightjar/plugins/internal/sqlitetest"
)

func TestMain(m *testing.M) {
	sqlitetest.RunWriterIfRequested()
	os.Exit(m.Run())
}

// TestTakeUnderLoad copies a database while another process commits transfers: every copy
// passes integrity_check and holds the cross-table invariant, and the writer sees no error.
func TestTakeUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: real writer process")
	}
	for _, tc := range []struct {
		journal string
		method  sqlitecopy.Method
		mode    string
	}{
		{"wal", sqlitecopy.MethodBackup, sqlitecopy.CopyPages},
		{"wal", sqlitecopy.MethodVacuum, sqlitecopy.CopyVacuum},
		{"delete", sqlitecopy.MethodBackup, sqlitecopy.CopyPages},
	} {
		t.Run(tc.journal+"/"+string(tc.method), func(t *testing.T) {
			dir := t.TempDir()
			db := filepath.Join(dir, "bank.db")
			sqlitetest.CreateBank(t, db, tc.journal, 8)
			w := sqlitetest.StartWriter(t, db)
			scratch := filepath.Join(dir, "scratch")
			var last int64 = -1
			for i := 0; i < 3; i++ {
				time.Sleep(150 * time.Millisecond)
				s, err := sqlitecopy.Take(context.Background(), db, scratch, sqlitecopy.Options{Method: tc.method, BusyTimeout: 30 * time.Second}, sqlitecopy.LevelFull)
				if err != nil {
					t.Fatalf("copy %d: %v", i, err)
				}
				if s.Check.Result != "ok" {
					t.Errorf("copy %d: integrity %q", i, s.Check.Result)
				}
				n := sqlitetest.CheckInvariant(t, s.Path)
				if n < last {
					t.Errorf("copy %d has %d transfers, the one before had %d", i, n, last)
				}
				last = n
				if s.Info.UserVersion != 7 || s.Info.JournalMode != tc.journal || s.Info.PageCount == 0 || s.Info.CopyMode != tc.mode {
					t.Errorf("copy %d: info %+v", i, s.Info)
				}
				if err := s.Remove(); err != nil {
					t.Fatal(err)
				}
			}
			commits, err := w.Stop()
			if err != nil {
				t.Fatal(err)
			}
			if commits == 0 || last == 0 {
				t.Fatalf("writer committed %d transactions, last copy saw %d: the test did not run under load", commits, last)
			}
			t.Logf("writer committed %d transactions; last copy holds %d", commits, last)
			if left, _ := os.ReadDir(scratch); len(left) != 0 {
				t.Errorf("scratch not cleaned: %v", left)
			}
		})
	}
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestCopyLeavesSourceAlone checks that copying never writes to the source (no checkpoint,
// no header change) and that two copies of an unchanged database are byte-identical.
func TestCopyLeavesSourceAlone(t *testing.T) {
	for _, jm := range []string{"wal", "delete"} {
		t.Run(jm, func(t *testing.T) {
			dir := t.TempDir()
			db := filepath.Join(dir, "bank.db")
			sqlitetest.CreateBank(t, db, jm, 1)
			before := fileSum(t, db)
			info0, _ := os.Stat(db)
			var sums [][32]byte
			for i := 0; i < 2; i++ {
				s, err := sqlitecopy.Take(context.Background(), db, filepath.Join(dir, "scratch"), sqlitecopy.Options{}, sqlitecopy.LevelQuick)
				if err != nil {
					t.Fatal(err)
				}
				sums = append(sums, fileSum(t, s.Path))
				if s.Info.JournalMode != jm {
					t.Errorf("journal mode %q, want %q", s.Info.JournalMode, jm)
				}
				if s.Info.CopyMode != sqlitecopy.CopyPages { // an empty WAL too
					t.Errorf("copy mode %q, want %q", s.Info.CopyMode, sqlitecopy.CopyPages)
				}
				s.Remove()
			}
			if sums[0] != sums[1] {
				t.Error("two copies of an unchanged database differ")
			}
			if fileSum(t, db) != before {
				t.Error("the source database file changed")
			}
			if info1, _ := os.Stat(db); !info1.ModTime().Equal(info0.ModTime()) {
				t.Error("the source database's mtime changed")
			}
		})
	}
}

func TestSourceErrors(t *testing.T) {
	dir := t.TempDir()
	notDB := filepath.Join(dir, "notes.txt")
	os.WriteFile(notDB, []byte("just some text, long enough to have a header\n"), 0o644)
	good := filepath.Join(dir, "good.db")
	sqlitetest.CreateBank(t, good, "wal", 0)
	blocker := filepath.Join(dir, "blocker")
	os.WriteFile(blocker, nil, 0o644)
	for _, tc := range []struct {
		name, src, scratch string
		want               string
		is                 error
	}{
		{"missing", filepath.Join(dir, "nope.db"), dir, "does not exist", nil},
		{"not a database", notDB, dir, "not a SQLite database", sqlitecopy.ErrNotDatabase},
		{"folder", dir, dir, "not a regular file", sqlitecopy.ErrNotDatabase},
		// Tests run as root, which ignores permission bits: a file where a folder should be
		// makes the scratch folder impossible to create.
		{"unwritable scratch", good, filepath.Join(blocker, "scratch"), "scratch folder", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sqlitecopy.Take(context.Background(), tc.src, tc.scratch, sqlitecopy.Options{}, sqlitecopy.LevelFull)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v does not wrap %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.src) && !strings.Contains(err.Error(), tc.scratch) {
				t.Errorf("error %v names neither the database nor the scratch folder", err)
			}
		})
	}
}

// TestLockedDatabase: a database that stays locked fails after the busy timeout.
func TestLockedDatabase(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: sqlite3 holds the lock")
	}
	dir := t.TempDir()
	db := filepath.Join(dir, "bank.db")
	sqlitetest.CreateBank(t, db, "delete", 0)
	sqlitetest.HoldLock(t, db)
	start := time.Now()
	_, err := sqlitecopy.Take(context.Background(), db, dir, sqlitecopy.Options{BusyTimeout: 300 * time.Millisecond}, sqlitecopy.LevelFull)
	if !errors.Is(err, sqlitecopy.ErrLocked) {
		t.Fatalf("error %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), db) || !strings.Contains(err.Error(), "busy_timeout") {
		t.Errorf("error %v should name the database and the busy_timeout setting", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("took %s to give up", d)
	}
}

// TestCheckFindsDamage: the check of a copy, and the check of a stream's state (through
// SQLite, beside the stream), find damage.
func TestCheckFindsDamage(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "bank.db")
	sqlitetest.CreateBank(t, db, "wal", 1)
	if _, err := sqlitecopy.Check(context.Background(), db, sqlitecopy.LevelFull); err != nil {
		t.Fatalf("good database: %v", err)
	}
	bad := filepath.Join(dir, "bad.db")
	sqlitetest.Damaged(t, db, bad)
	for _, level := range []sqlitecopy.Level{sqlitecopy.LevelFull, sqlitecopy.LevelQuick} {
		res, err := sqlitecopy.Check(context.Background(), bad, level)
		if !errors.Is(err, sqlitecopy.ErrDamaged) {
			t.Errorf("%s check of a damaged file: %v (result %q), want ErrDamaged", level, err, res.Result)
		}
		if _, err := streamTo(t, bad, filepath.Join(dir, "out.db"), level); !errors.Is(err, sqlitecopy.ErrDamaged) {
			t.Errorf("%s check of a damaged database's stream: %v, want ErrDamaged", level, err)
		}
	}
	if _, err := streamTo(t, bad, filepath.Join(dir, "out.db"), sqlitecopy.LevelOff); err != nil {
		t.Errorf("a damaged database's stream with the check off: %v", err)
	}
	trunc := filepath.Join(dir, "trunc.db")
	os.WriteFile(trunc, bytes.Repeat([]byte("x"), 100), 0o644)
	if _, err := sqlitecopy.Check(context.Background(), trunc, sqlitecopy.LevelFull); !errors.Is(err, sqlitecopy.ErrDamaged) {
		t.Errorf("check of a non-database: %v, want ErrDamaged", err)
	}
}

func TestNoRoomInScratch(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "bank.db")
	sqlitetest.CreateBank(t, db, "wal", 0)
	// A tmpfs smaller than the database is not available to every test runner; /dev/shm's
	// size is, but may be large. Ask for more room than any disk has instead.
	err := sqlitecopy.CheckFreeForTest(dir, 1<<60)
	if err == nil || !strings.Contains(err.Error(), "scratch_dir") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("error %v, want one naming the folder and scratch_dir", err)
	}
}

// TestOddPath: file names reach SQLite as URIs, so characters URIs treat specially must be
// escaped.
func TestOddPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a dir?with #odd %41 chars&mode=rw")
	os.MkdirAll(dir, 0o755)
	db := filepath.Join(dir, "bank 1.db")
	sqlitetest.CreateBank(t, db, "wal", 0)
	s, err := sqlitecopy.Take(context.Background(), db, filepath.Join(dir, "scratch?x"), sqlitecopy.Options{}, sqlitecopy.LevelFull)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Remove()
	if filepath.Dir(filepath.Dir(s.Path)) != filepath.Join(dir, "scratch?x") {
		t.Errorf("copy made at %s", s.Path)
	}
	sqlitetest.CheckInvariant(t, s.Path)
}

// TestHotJournal: a writer killed mid-transaction leaves a hot journal that only a writer
// may roll back; the read-only copy says so instead of failing obscurely, and the source
// is left for its writer to recover.
func TestHotJournal(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: sqlite3 is killed mid-transaction")
	}
	dir := t.TempDir()
	db := filepath.Join(dir, "bank.db")
	sqlitetest.CreateBank(t, db, "delete", 2)
	cmd := testenv.Command(t, "sqlite3", db)
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// A tiny cache makes the transaction spill changed pages into the database file.
	fmt.Fprintln(in, "PRAGMA cache_size=1; BEGIN; UPDATE filler SET data = randomblob(65536); SELECT 'spilled';")
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "spilled" {
		t.Fatalf("sqlite3: %q", line)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if fi, err := os.Stat(db + "-journal"); err != nil || fi.Size() == 0 {
		t.Fatalf("no hot journal: %v", err)
	}
	_, err := sqlitecopy.Take(context.Background(), db, filepath.Join(dir, "scratch"), sqlitecopy.Options{BusyTimeout: time.Second}, sqlitecopy.LevelFull)
	if err == nil || !strings.Contains(err.Error(), "recovery") {
		t.Fatalf("error %v, want one explaining the needed recovery", err)
	}
	t.Log(err)
	if _, err := os.Stat(db + "-journal"); err != nil {
		t.Error("the hot journal was touched")
	}
}

// TestStaleCopiesRemoved: a copy left by a killed run is removed by a later copy once old.
func TestStaleCopiesRemoved(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "bank.db")
	sqlitetest.CreateBank(t, db, "wal", 0)
	scratch := filepath.Join(dir, "scratch")
	old := filepath.Join(scratch, "sqlite-copy-123")
	recent := filepath.Join(scratch, "sqlite-copy-456")
	for _, d := range []string{old, recent} {
		os.MkdirAll(d, 0o700)
		os.WriteFile(filepath.Join(d, "bank.db"), []byte("left over"), 0o600)
	}
	past := time.Now().Add(-sqlitecopy.StaleAfter - time.Hour)
	os.Chtimes(old, past, past)
	s, err := sqlitecopy.Take(context.Background(), db, scratch, sqlitecopy.Options{}, sqlitecopy.LevelOff)
	if err != nil {
		t.Fatal(err)
	}
	s.Remove()
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Error("a stale copy was not removed")
	}
	if _, err := os.Stat(recent); err != nil {
		t.Error("a recent copy (maybe another run's) was removed")
	}
}

// openWAL opens the bank at path read-write with automatic checkpoints off, so what it
// commits stays in the WAL until the test ends.
func openWAL(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sqlitetest.Open(path, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec("PRAGMA wal_autocheckpoint=0"); err != nil {
		t.Fatal(err)
	}
	return db
}

// TestPageCopyOfWAL copies a database whose newest commits are only in its WAL: a shrink
// (VACUUM, so the file holds pages the committed state has dropped) and growth after it
// (pages only the WAL has). The page copy must lay the frames over the file and cut it to
// the committed size.
func TestPageCopyOfWAL(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bank.db")
	sqlitetest.CreateBank(t, path, "wal", 2)
	db := openWAL(t, path)
	if _, err := db.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		t.Fatal(err)
	}
	fileBefore, _ := os.Stat(path)
	if err := sqlitetest.Transfers(db, 300); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"DELETE FROM filler", "VACUUM"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := sqlitetest.Transfers(db, 200); err != nil {
		t.Fatal(err)
	}
	if fileAfter, _ := os.Stat(path); fileAfter.Size() != fileBefore.Size() {
		t.Fatalf("the database file changed size (%d -> %d): a checkpoint ran", fileBefore.Size(), fileAfter.Size())
	}
	if wal, err := os.Stat(path + "-wal"); err != nil || wal.Size() == 0 {
		t.Fatalf("no WAL to copy: %v", err)
	}

	s, err := sqlitecopy.Take(context.Background(), path, filepath.Join(dir, "scratch"), sqlitecopy.Options{}, sqlitecopy.LevelFull)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Remove()
	if s.Info.CopyMode != sqlitecopy.CopyPages {
		t.Errorf("copy mode %q, want %q", s.Info.CopyMode, sqlitecopy.CopyPages)
	}
	if n := sqlitetest.CheckInvariant(t, s.Path); n != 500 {
		t.Errorf("the copy holds %d transfers, want 500", n)
	}
	copied, _ := os.Stat(s.Path)
	if copied.Size() != s.Info.Size() || copied.Size() >= fileBefore.Size() {
		t.Errorf("copy is %d bytes, %d pages of %d; the source file %d", copied.Size(), s.Info.PageCount, s.Info.PageSize, fileBefore.Size())
	}
	var filler int
	if err := openCopy(t, s.Path).QueryRow("SELECT count(*) FROM filler").Scan(&filler); err != nil || filler != 0 {
		t.Errorf("filler rows in the copy: %d, %v (want 0: deleted before the copy)", filler, err)
	}
}

func openCopy(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&immutable=1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestPageCopyFallsBack breaks the checksum chain of the WAL's first frame (which SQLite's
// readers, holding the WAL index, do not check again). The page copy cannot vouch for the
// frames then, so the copy is made with the backup API, and is still whole.
func TestPageCopyFallsBack(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bank.db")
	sqlitetest.CreateBank(t, path, "wal", 1)
	db := openWAL(t, path)
	if err := sqlitetest.Transfers(db, 50); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path+"-wal", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	const at = 32 + 16 // the first frame's first checksum word
	if _, err := f.ReadAt(b[:], at); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b[:], at); err != nil {
		t.Fatal(err)
	}
	f.Close()

	s, err := sqlitecopy.Take(context.Background(), path, filepath.Join(dir, "scratch"), sqlitecopy.Options{}, sqlitecopy.LevelFull)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Remove()
	if s.Info.CopyMode != sqlitecopy.CopyBackupAPI {
		t.Errorf("copy mode %q, want %q", s.Info.CopyMode, sqlitecopy.CopyBackupAPI)
	}
	if !strings.Contains(s.Info.WhyBackupAPI, "frame 1") {
		t.Errorf("reason for the backup API: %q, want one naming frame 1", s.Info.WhyBackupAPI)
	}
	if n := sqlitetest.CheckInvariant(t, s.Path); n != 50 {
		t.Errorf("the copy holds %d transfers, want 50", n)
	}
}

// TestPageCopyUnderLoad takes many page copies, and in WAL mode as many streams, while
// writer processes commit. In WAL mode
// two writers also checkpoint: SQLite's automatic checkpoints copy WAL frames into the
// database file while it is being read. In rollback-journal mode one writer waits for the
// copy's shared lock (two starve the reader for a minute). Every copy must be one committed
// state.
func TestPageCopyUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: real writer processes")
	}
	for _, tc := range []struct {
		journal string
		copies  int
		writers int
	}{{"wal", 40, 2}, {"delete", 10, 1}} {
		journal := tc.journal
		t.Run(journal, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "bank.db")
			sqlitetest.CreateBank(t, path, journal, 4)
			var ws []*sqlitetest.Writer
			for range tc.writers {
				ws = append(ws, sqlitetest.StartWriter(t, path))
			}
			scratch := filepath.Join(dir, "scratch")
			var last int64 = -1
			streamed := filepath.Join(dir, "streamed.db")
			for i := 0; i < tc.copies; i++ {
				time.Sleep(time.Duration(i%5) * 20 * time.Millisecond)
				// In WAL mode every other copy is a stream (OpenStream), written to a file.
				got, mode, remove := streamed, sqlitecopy.CopyPages, func() error { return os.Remove(streamed) }
				if journal != "wal" || i%2 == 0 {
					s, err := sqlitecopy.Take(context.Background(), path, scratch, sqlitecopy.Options{BusyTimeout: 30 * time.Second}, sqlitecopy.LevelQuick)
					if err != nil {
						t.Fatalf("copy %d: %v", i, err)
					}
					got, mode, remove = s.Path, s.Info.CopyMode, s.Remove
				} else if _, err := streamTo(t, path, streamed, sqlitecopy.LevelQuick); err != nil {
					t.Fatalf("stream %d: %v", i, err)
				}
				n, err := sqlitetest.Invariant(got)
				if err != nil {
					t.Fatalf("copy %d (%s): %v", i, mode, err)
				}
				if n < last {
					t.Errorf("copy %d has %d transfers, the one before had %d", i, n, last)
				}
				if mode != sqlitecopy.CopyPages {
					t.Errorf("copy %d made by %q", i, mode)
				}
				last = n
				remove()
			}
			for i, w := range ws {
				commits, err := w.Stop()
				if err != nil {
					t.Fatal(err)
				}
				if commits == 0 || last == 0 {
					t.Fatalf("writer %d committed %d, last copy saw %d: not under load", i, commits, last)
				}
				t.Logf("writer %d committed %d transfers; the last copy holds %d", i, commits, last)
			}
		})
	}
}
