package sqlitecopy_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nightjar-backup/nightjar/plugins/internal/sqlitecopy"
	"github.com/nightjar-backup/nightjar/plugins/internal/sqlitetest"
)

// streamTo streams the database at src into the file dst and checks it at level.
func streamTo(t *testing.T, src, dst string, level sqlitecopy.Level) (*sqlitecopy.Stream, error) {
	t.Helper()
	s, err := sqlitecopy.OpenStream(context.Background(), src, 30*time.Second)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	var buf bytes.Buffer
	checked := make(chan error, 1)
	go func() { _, err := s.Check(context.Background(), level); checked <- err }()
	n, err := s.CopyTo(context.Background(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != s.Size || int64(buf.Len()) != s.Size {
		t.Fatalf("streamed %d bytes (%d written), Size says %d", n, buf.Len(), s.Size)
	}
	if err := <-checked; err != nil {
		return s, err
	}
	if err := os.WriteFile(dst, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return s, nil
}

// TestStreamOfWAL streams databases whose newest commits are only in the WAL: growth (pages
// only the WAL has), a shrink (the file holds pages the state has dropped), and none (all
// checkpointed). The stream must give the same bytes as the page copy in scratch.
func TestStreamOfWAL(t *testing.T) {
	for _, tc := range []struct {
		name string
		prep func(t *testing.T, path string)
	}{
		{"frames", func(t *testing.T, path string) {
			db := openWAL(t, path)
			if err := sqlitetest.Transfers(db, 300); err != nil {
				t.Fatal(err)
			}
		}},
		{"shrunk", func(t *testing.T, path string) {
			db := openWAL(t, path)
			for _, q := range []string{"PRAGMA wal_checkpoint(TRUNCATE)", "DELETE FROM filler", "VACUUM"} {
				if _, err := db.Exec(q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			if err := sqlitetest.Transfers(db, 200); err != nil {
				t.Fatal(err)
			}
		}},
		{"checkpointed", func(t *testing.T, path string) {
			db := openWAL(t, path)
			if err := sqlitetest.Transfers(db, 100); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "bank.db")
			sqlitetest.CreateBank(t, path, "wal", 2)
			tc.prep(t, path)
			streamed := filepath.Join(dir, "streamed.db")
			s, err := streamTo(t, path, streamed, sqlitecopy.LevelFull)
			if err != nil {
				t.Fatal(err)
			}
			if s.Info.CopyMode != sqlitecopy.CopyPages || s.Info.PageCount*s.Info.PageSize != s.Size {
				t.Errorf("info %+v for %d bytes", s.Info, s.Size)
			}
			c, err := sqlitecopy.Take(context.Background(), path, filepath.Join(dir, "scratch"), sqlitecopy.Options{}, sqlitecopy.LevelOff)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Remove()
			want, _ := os.ReadFile(c.Path)
			got, _ := os.ReadFile(streamed)
			if !bytes.Equal(got, want) {
				t.Errorf("the stream (%d bytes) differs from the page copy (%d bytes)", len(got), len(want))
			}
			if _, err := sqlitecopy.Check(context.Background(), streamed, sqlitecopy.LevelFull); err != nil {
				t.Errorf("the streamed database: %v", err)
			}
			sqlitetest.CheckInvariant(t, streamed)
		})
	}
}

// TestStreamRefuses: a rollback-journal database is not streamed (its shared lock would hold
// writers off while the stream is read) and a file that only has the header is no database.
func TestStreamRefuses(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bank.db")
	sqlitetest.CreateBank(t, path, "delete", 1)
	if _, err := sqlitecopy.OpenStream(context.Background(), path, time.Second); !errors.Is(err, sqlitecopy.ErrNoStream) {
		t.Errorf("rollback-journal database: %v, want ErrNoStream", err)
	}
	fake := filepath.Join(dir, "fake.db")
	os.WriteFile(fake, append([]byte(sqlitecopy.Header), bytes.Repeat([]byte{0xee}, 4000)...), 0o644)
	if _, err := sqlitecopy.OpenStream(context.Background(), fake, time.Second); !errors.Is(err, sqlitecopy.ErrNotDatabase) {
		t.Errorf("a header over garbage: %v, want ErrNotDatabase", err)
	}
}
