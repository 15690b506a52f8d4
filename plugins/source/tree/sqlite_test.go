package tree_test

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nightjar-backup/nightjar/core"
	"github.com/nightjar-backup/nightjar/core/testenv"
	"github.com/nightjar-backup/nightjar/plugins/internal/sqlitecopy"
	"github.com/nightjar-backup/nightjar/plugins/internal/sqlitetest"
	"github.com/nightjar-backup/nightjar/plugins/source/tree"
)

func TestMain(m *testing.M) {
	sqlitetest.RunWriterIfRequested()
	os.Exit(m.Run())
}

func newTree(t *testing.T, root, mode string) *tree.Source {
	t.Helper()
	s, err := tree.New("data", root, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s, err = s.WithSQLite(mode, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	return s
}

// readTar returns the archive's regular files by name.
func readTar(t *testing.T, b []byte) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = data
	}
}

func snapshot(t *testing.T, s *tree.Source) ([]byte, map[string]string) {
	t.Helper()
	var buf bytes.Buffer
	meta, err := s.Snapshot(context.Background(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), meta
}

// TestTreeStoresLiveDatabaseConsistently: a database inside the tree, written by another
// process during the snapshot, is stored as a consistent copy without its sidecar files:
// streamed in WAL mode, copied in scratch first in rollback-journal mode.
func TestTreeStoresLiveDatabaseConsistently(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: real writer process")
	}
	for _, jm := range []string{"wal", "delete"} {
		t.Run(jm, func(t *testing.T) {
			root := t.TempDir()
			os.MkdirAll(filepath.Join(root, "db"), 0o755)
			db := filepath.Join(root, "db", "bank.db")
			sqlitetest.CreateBank(t, db, jm, 4)
			os.WriteFile(filepath.Join(root, "notes.txt"), []byte("hello\n"), 0o644)
			w := sqlitetest.StartWriter(t, db)
			time.Sleep(200 * time.Millisecond)
			src := newTree(t, root, tree.SQLiteSnapshot)
			if jm == "wal" {
				// Streamed into the archive: no copy in scratch, which cannot be made here.
				var err error
				if src, err = src.WithSQLite(tree.SQLiteSnapshot, filepath.Join(root, "notes.txt", "scratch")); err != nil {
					t.Fatal(err)
				}
			}
			b, meta := snapshot(t, src)
			commits, err := w.Stop()
			if err != nil {
				t.Fatal(err)
			}
			files := readTar(t, b)
			for name := range files {
				if strings.HasPrefix(name, "db/bank.db-") {
					t.Errorf("sidecar %s was stored", name)
				}
			}
			if string(files["notes.txt"]) != "hello\n" {
				t.Error("ordinary file missing")
			}
			out := filepath.Join(t.TempDir(), "bank.db")
			os.WriteFile(out, files["db/bank.db"], 0o644)
			if res, err := testenv.Command(t, "sqlite3", out, "PRAGMA integrity_check").CombinedOutput(); err != nil || strings.TrimSpace(string(res)) != "ok" {
				t.Fatalf("sqlite3 integrity_check of the stored database: %s %v", res, err)
			}
			n := sqlitetest.CheckInvariant(t, out)
			if n == 0 || commits <= n {
				t.Errorf("stored copy holds %d transfers of %d committed: not under load", n, commits)
			}
			if meta["sqlite_snapshot_files"] != "db/bank.db" || meta["sqlite_snapshot_files_count"] != "1" {
				t.Errorf("meta does not name the database: %v", meta)
			}
			if jm == "wal" && !strings.Contains(meta["sqlite_sidecars_left_out"], "db/bank.db-wal") {
				t.Errorf("meta does not name the left-out -wal: %v", meta)
			}
		})
	}
}

// TestTreeSQLiteModes checks copy, raw and skip, and that an unchanged tree with a database gives
// identical tar streams.
func TestTreeSQLiteModes(t *testing.T) {
	root := t.TempDir()
	db := filepath.Join(root, "app.db")
	sqlitetest.CreateBank(t, db, "wal", 1)
	os.WriteFile(filepath.Join(root, "fake.db"), []byte("SQLite format 2 is not a thing"), 0o644)
	os.WriteFile(filepath.Join(root, "orphan.db-wal"), []byte("a -wal without a database"), 0o644)
	garbage := append([]byte("SQLite format 3\x00"), bytes.Repeat([]byte{0xee}, 4000)...)
	os.WriteFile(filepath.Join(root, "broken.db"), garbage, 0o644)

	// snapshot: the first read-only open of a quiet WAL database makes SQLite create its
	// -wal and -shm files (as any reader would); from then on the input is unchanged, and
	// the stream is identical run after run.
	snapshot(t, newTree(t, root, tree.SQLiteSnapshot))
	b1, _ := snapshot(t, newTree(t, root, tree.SQLiteSnapshot))
	b2, meta := snapshot(t, newTree(t, root, tree.SQLiteSnapshot))
	if !bytes.Equal(b1, b2) {
		t.Error("two snapshots of an unchanged tree with a database differ")
	}
	// copy: the same bytes, by way of a copy in scratch, which must then be usable.
	if bc, meta := snapshot(t, newTree(t, root, tree.SQLiteCopy)); !bytes.Equal(bc, b2) || meta["sqlite"] != "copy" {
		t.Errorf("sqlite: copy stored other bytes than snapshot (meta %v)", meta)
	}
	noScratch := filepath.Join(root, "fake.db", "scratch")
	if c, err := newTree(t, root, "").WithSQLite(tree.SQLiteCopy, noScratch); err != nil {
		t.Fatal(err)
	} else if _, err := c.Snapshot(context.Background(), io.Discard); err == nil || !strings.Contains(err.Error(), "scratch folder") {
		t.Errorf("sqlite: copy without a usable scratch folder: %v, want an error naming it", err)
	}
	files := readTar(t, b2)
	if _, ok := files["app.db-wal"]; ok {
		t.Error("snapshot mode stored app.db-wal")
	}
	if _, ok := files["fake.db"]; !ok {
		t.Error("a file that only looks like a database was left out")
	}
	if _, ok := files["orphan.db-wal"]; !ok {
		t.Error("a -wal file without a database beside it was left out")
	}
	if !bytes.Equal(files["broken.db"], garbage) || meta["sqlite_stored_raw"] != "broken.db" {
		t.Errorf("a file with the header that is no database should be stored as it is and named in the meta: %v", meta)
	}
	if meta["sqlite"] != "snapshot" || meta["sqlite_snapshot_files"] != "app.db" {
		t.Errorf("meta %v", meta)
	}

	_, meta = snapshot(t, newTree(t, root, tree.SQLiteSkip))
	bs, _ := snapshot(t, newTree(t, root, tree.SQLiteSkip))
	files = readTar(t, bs)
	for _, name := range []string{"app.db", "app.db-wal", "app.db-shm"} {
		if _, ok := files[name]; ok {
			t.Errorf("skip mode stored %s", name)
		}
	}
	if meta["sqlite_skipped_files"] != "app.db\nbroken.db" { // skip goes by the header alone
		t.Errorf("skip meta %v", meta)
	}

	br, _ := snapshot(t, newTree(t, root, tree.SQLiteRaw))
	files = readTar(t, br)
	raw, _ := os.ReadFile(db)
	if !bytes.Equal(files["app.db"], raw) {
		t.Error("raw mode did not store the database file as it is")
	}
	if _, ok := files["app.db-wal"]; !ok {
		t.Error("raw mode left out the -wal file")
	}

	if _, err := newTree(t, root, "").WithSQLite("sometimes", ""); err == nil {
		t.Error("an unknown sqlite mode was accepted")
	}
}

// TestTreeSQLiteIntegrity: with sqlite_integrity set, a database that fails the check is
// still stored, page for page, and named in the meta; with it off (the default) it is not
// checked.
func TestTreeSQLiteIntegrity(t *testing.T) {
	root := t.TempDir()
	good := filepath.Join(root, "good.db")
	sqlitetest.CreateBank(t, good, "wal", 1)
	b := sqlitetest.Damaged(t, good, filepath.Join(root, "bad.db"))
	for _, tc := range []struct {
		level     sqlitecopy.Level
		copied    string
		raw       string
		integrity string
	}{
		{sqlitecopy.LevelOff, "bad.db\ngood.db", "", "off"},
		{sqlitecopy.LevelQuick, "good.db", "bad.db", "quick"},
		{sqlitecopy.LevelFull, "good.db", "bad.db", "full"},
	} {
		t.Run(string(tc.level), func(t *testing.T) {
			tb, meta := snapshot(t, newTree(t, root, tree.SQLiteSnapshot).WithIntegrity(tc.level))
			if meta["sqlite_snapshot_files"] != tc.copied || meta["sqlite_stored_raw"] != tc.raw || meta["sqlite_integrity"] != tc.integrity {
				t.Errorf("meta %v", meta)
			}
			if !bytes.Equal(readTar(t, tb)["bad.db"], b) {
				t.Error("the damaged database is not stored as it is")
			}
		})
	}
}

// TestTreeRestoreRemovesStaleSidecars: a forced restore over a folder that still has a
// database's old -wal must remove it, or SQLite would replay it into the restored copy.
func TestTreeRestoreRemovesStaleSidecars(t *testing.T) {
	root := t.TempDir()
	db := filepath.Join(root, "app.db")
	sqlitetest.CreateBank(t, db, "wal", 0)
	b, _ := snapshot(t, newTree(t, root, tree.SQLiteSnapshot))

	to := t.TempDir()
	target := filepath.Join(to, "data")
	os.MkdirAll(target, 0o755)
	os.WriteFile(filepath.Join(target, "app.db"), []byte("old"), 0o644)
	os.WriteFile(filepath.Join(target, "app.db-wal"), []byte("stale wal"), 0o644)
	os.WriteFile(filepath.Join(target, "keep.db-wal"), []byte("not ours"), 0o644)
	s := newTree(t, root, tree.SQLiteSnapshot)
	if err := s.Restore(context.Background(), bytes.NewReader(b), to, core.RestoreOptions{}); err == nil {
		t.Fatal("restore over a non-empty folder without force was accepted")
	}
	if err := s.Restore(context.Background(), bytes.NewReader(b), to, core.RestoreOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(target, "app.db-wal")); !os.IsNotExist(err) {
		t.Error("the stale -wal is still beside the restored database")
	}
	if _, err := os.Stat(filepath.Join(target, "keep.db-wal")); err != nil {
		t.Error("a file that is not a sidecar of a restored database was removed")
	}
	sqlitetest.CheckInvariant(t, filepath.Join(target, "app.db"))
}
