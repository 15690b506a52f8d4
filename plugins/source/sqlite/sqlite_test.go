package sqlite_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nightjar-backup/nightjar/core"
	"github.com/nightjar-backup/nightjar/core/testenv"
	"github.com/nightjar-backup/nightjar/plugins/internal/sqlitecopy"
	"github.com/nightjar-backup/nightjar/plugins/internal/sqlitetest"
	"github.com/nightjar-backup/nightjar/plugins/source/sqlite"
)

func TestMain(m *testing.M) {
	sqlitetest.RunWriterIfRequested()
	os.Exit(m.Run())
}

func newSource(t *testing.T, db, scratch string, opt sqlite.Options) *sqlite.Source {
	t.Helper()
	opt.ScratchDir = scratch
	s, err := sqlite.New("bank.db", db, opt)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// snapshotToFile runs Snapshot and writes the artifact to a file.
func snapshotToFile(t *testing.T, s *sqlite.Source, out string) map[string]string {
	t.Helper()
	var buf bytes.Buffer
	meta, err := s.Snapshot(context.Background(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return meta
}

func stockIntegrity(t *testing.T, path string) string {
	t.Helper()
	out, err := testenv.Command(t, "sqlite3", path, "PRAGMA integrity_check").CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3 %s: %v: %s", path, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestSnapshotUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: real writer process")
	}
	for _, jm := range []string{"wal", "delete"} {
		t.Run(jm, func(t *testing.T) {
			dir := t.TempDir()
			db := filepath.Join(dir, "bank.db")
			sqlitetest.CreateBank(t, db, jm, 4)
			scratch := filepath.Join(dir, "scratch")
			s := newSource(t, db, scratch, sqlite.Options{})
			w := sqlitetest.StartWriter(t, db)
			time.Sleep(200 * time.Millisecond)
			out := filepath.Join(dir, "out.db")
			meta := snapshotToFile(t, s, out)
			commits, err := w.Stop()
			if err != nil {
				t.Fatal(err)
			}
			if got := stockIntegrity(t, out); got != "ok" {
				t.Fatalf("sqlite3 integrity_check of the artifact: %s", got)
			}
			n := sqlitetest.CheckInvariant(t, out)
			if n == 0 || commits <= n {
				t.Errorf("copy holds %d transfers, writer committed %d: not copied under load", n, commits)
			}
			for _, k := range []string{"page_size", "page_count", "journal_mode", "user_version", "sqlite_version",
				"integrity", "integrity_check", "integrity_seconds"} {
				if meta[k] == "" {
					t.Errorf("meta lacks %s: %v", k, meta)
				}
			}
			if meta["journal_mode"] != jm || meta["integrity"] != "ok" || meta["user_version"] != "7" {
				t.Errorf("meta %v", meta)
			}
			ps, _ := strconv.ParseInt(meta["page_size"], 10, 64)
			pc, _ := strconv.ParseInt(meta["page_count"], 10, 64)
			if fi, _ := os.Stat(out); fi.Size() != ps*pc {
				t.Errorf("artifact has %d bytes, meta says %d pages of %d", fi.Size(), pc, ps)
			}
			if left, _ := os.ReadDir(scratch); len(left) != 0 {
				t.Errorf("scratch not cleaned: %v", left)
			}
		})
	}
}

func TestSnapshotErrors(t *testing.T) {
	dir := t.TempDir()
	scratch := filepath.Join(dir, "scratch")
	notDB := filepath.Join(dir, "notes.txt")
	os.WriteFile(notDB, []byte("hello, this is not a database at all\n"), 0o644)
	for _, tc := range []struct{ name, path, want string }{
		{"missing", filepath.Join(dir, "gone.db"), "does not exist"},
		{"not a database", notDB, "not a SQLite database"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The constructor must not need the database (restore runs on fresh machines).
			s := newSource(t, tc.path, scratch, sqlite.Options{})
			_, err := s.Snapshot(context.Background(), &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.path) {
				t.Fatalf("error %v, want one naming %s and saying %q", err, tc.path, tc.want)
			}
			if s.EstimateSize(context.Background()) != -1 {
				t.Error("EstimateSize of an unreadable database should be -1")
			}
			if left, _ := os.ReadDir(scratch); len(left) != 0 {
				t.Errorf("scratch not cleaned: %v", left)
			}
		})
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  sqlite.Options
	}{
		{"a/b", sqlite.Options{}},
		{"x.db", sqlite.Options{Method: "copy"}},
		{"x.db", sqlite.Options{Integrity: "paranoid"}},
	} {
		if _, err := sqlite.New(tc.name, "/nonexistent/x.db", tc.opt); err == nil {
			t.Errorf("New(%q, %+v) accepted", tc.name, tc.opt)
		}
	}
}

func TestEstimateSize(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "bank.db")
	sqlitetest.CreateBank(t, db, "delete", 1)
	s := newSource(t, db, dir, sqlite.Options{})
	fi, _ := os.Stat(db)
	if got := s.EstimateSize(context.Background()); got != fi.Size() {
		t.Errorf("EstimateSize = %d, file has %d bytes", got, fi.Size())
	}
}

func TestRestore(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "bank.db")
	sqlitetest.CreateBank(t, db, "wal", 1)
	s := newSource(t, db, filepath.Join(dir, "scratch"), sqlite.Options{})
	art := filepath.Join(dir, "artifact")
	snapshotToFile(t, s, art)
	want, _ := os.ReadFile(art)
	ctx := context.Background()
	to := filepath.Join(dir, "restore")

	if err := s.Restore(ctx, bytes.NewReader(want), to, core.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(to, "bank.db"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("restored bytes differ from the artifact (%v)", err)
	}

	// Refuses to replace the database, or a database whose sidecar alone exists.
	err = s.Restore(ctx, bytes.NewReader(want), to, core.RestoreOptions{})
	if err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("second restore: %v, want a refusal mentioning --force", err)
	}
	only := filepath.Join(dir, "only-wal")
	os.MkdirAll(only, 0o755)
	os.WriteFile(filepath.Join(only, "bank.db-wal"), []byte("stale"), 0o644)
	if err := s.Restore(ctx, bytes.NewReader(want), only, core.RestoreOptions{}); err == nil || !strings.Contains(err.Error(), "bank.db-wal") {
		t.Fatalf("restore beside a stale -wal: %v, want a refusal naming it", err)
	}

	// With Force the database is replaced and a stale -wal removed (it would be replayed).
	os.WriteFile(filepath.Join(to, "bank.db"), []byte("old contents"), 0o644)
	os.WriteFile(filepath.Join(to, "bank.db-wal"), []byte("stale"), 0o644)
	if err := s.Restore(ctx, bytes.NewReader(want), to, core.RestoreOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(to, "bank.db")); !bytes.Equal(got, want) {
		t.Error("forced restore did not write the artifact")
	}
	if _, err := os.Stat(filepath.Join(to, "bank.db-wal")); !errors.Is(err, os.ErrNotExist) {
		t.Error("forced restore left the stale -wal")
	}
	if stockIntegrity(t, filepath.Join(to, "bank.db")) != "ok" {
		t.Error("restored database fails sqlite3's integrity_check")
	}
	sqlitetest.CheckInvariant(t, filepath.Join(to, "bank.db"))

	// A damaged stream is refused and leaves nothing behind.
	bad := bytes.Clone(want)
	for i := 2 * 4096; i < 5*4096 && i < len(bad); i++ {
		bad[i] ^= 0x5a
	}
	fresh := filepath.Join(dir, "fresh")
	err = s.Restore(ctx, bytes.NewReader(bad), fresh, core.RestoreOptions{})
	if !errors.Is(err, sqlitecopy.ErrDamaged) {
		t.Fatalf("restore of a damaged stream: %v, want ErrDamaged", err)
	}
	if left, _ := os.ReadDir(fresh); len(left) != 0 {
		t.Errorf("damaged restore left files: %v", left)
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "bank.db")
	sqlitetest.CreateBank(t, db, "delete", 1)
	scratch := filepath.Join(dir, "scratch")
	s := newSource(t, db, scratch, sqlite.Options{})
	good, _ := os.ReadFile(db)
	if err := s.Check(context.Background(), bytes.NewReader(good)); err != nil {
		t.Fatalf("good database: %v", err)
	}
	bad := bytes.Clone(good)
	for i := 2 * 4096; i < 5*4096 && i < len(bad); i++ {
		bad[i] ^= 0x5a
	}
	if err := s.Check(context.Background(), bytes.NewReader(bad)); !errors.Is(err, sqlitecopy.ErrDamaged) {
		t.Fatalf("damaged database: %v, want ErrDamaged", err)
	}
	if err := s.Check(context.Background(), strings.NewReader("not a database")); err == nil {
		t.Fatal("text accepted as a database")
	}
	if left, _ := os.ReadDir(scratch); len(left) != 0 {
		t.Errorf("scratch not cleaned: %v", left)
	}
}

// failAfter is a sink that fails once it has taken n bytes.
type failAfter struct{ n int }

var errSinkFull = errors.New("sink full")

func (f *failAfter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		return 0, errSinkFull
	}
	f.n -= len(p)
	return len(p), nil
}

// The check runs beside the stream: a copy that fails it still fails the artifact, at
// either level, and a sink's failure is reported as the sink's, not as damage.
func TestSnapshotCheckBesideStream(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	sqlitetest.CreateBank(t, good, "delete", 4)
	bad := filepath.Join(dir, "bad.db")
	badBytes := sqlitetest.Damaged(t, good, bad)
	scratch := filepath.Join(dir, "scratch")
	for _, tc := range []struct {
		name, db, level string
		sink            io.Writer
		want            error // nil: the snapshot succeeds
	}{
		{"damaged, full", bad, "full", &bytes.Buffer{}, sqlitecopy.ErrDamaged},
		{"damaged, quick", bad, "quick", &bytes.Buffer{}, sqlitecopy.ErrDamaged},
		{"damaged, off", bad, "off", &bytes.Buffer{}, nil},
		{"sink fails", good, "full", &failAfter{n: 64 << 10}, errSinkFull},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSource(t, tc.db, scratch, sqlite.Options{Integrity: sqlitecopy.Level(tc.level)})
			meta, err := s.Snapshot(context.Background(), tc.sink)
			switch {
			case tc.want == nil && err != nil:
				t.Fatal(err)
			case tc.want == nil:
				if got := tc.sink.(*bytes.Buffer).Bytes(); !bytes.Equal(got, badBytes) || meta["integrity"] != "skipped" {
					t.Errorf("stored %d bytes (want the %d of the file), meta %v", len(got), len(badBytes), meta)
				}
			case !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.db) && tc.want == sqlitecopy.ErrDamaged:
				t.Fatalf("error %v, want %v naming %s", err, tc.want, tc.db)
			case tc.want == errSinkFull && errors.Is(err, sqlitecopy.ErrDamaged):
				t.Fatalf("a sink's failure reported as damage: %v", err)
			}
			if left, _ := os.ReadDir(scratch); len(left) != 0 {
				t.Errorf("scratch not cleaned: %v", left)
			}
		})
	}
}
