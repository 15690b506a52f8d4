package sqlitecopy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
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
	}{
		{"wal", sqlitecopy.MethodBackup},
		{"wal", sqlitecopy.MethodVacuum},
		{"delete", sqlitecopy.MethodBackup},
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
				if s.Info.UserVersion != 7 || s.Info.JournalMode != tc.journal || s.Info.PageCount == 0 {
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

func TestCheckFindsDamage(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "bank.db")
	sqlitetest.CreateBank(t, db, "delete", 1)
	b, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sqlitecopy.Check(context.Background(), db, sqlitecopy.LevelFull); err != nil {
		t.Fatalf("good database: %v", err)
	}
	// Overwrite the b-tree pages after the schema with garbage, keeping the header.
	pageSize := 4096
	for i := 2 * pageSize; i < 6*pageSize && i < len(b); i++ {
		b[i] = byte(i * 7)
	}
	bad := filepath.Join(dir, "bad.db")
	os.WriteFile(bad, b, 0o644)
	for _, level := range []sqlitecopy.Level{sqlitecopy.LevelFull, sqlitecopy.LevelQuick} {
		res, err := sqlitecopy.Check(context.Background(), bad, level)
		if !errors.Is(err, sqlitecopy.ErrDamaged) {
			t.Errorf("%s check of a damaged file: %v (result %q), want ErrDamaged", level, err, res.Result)
		}
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
