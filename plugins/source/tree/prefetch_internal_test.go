package tree

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// Sidecars of SQLite databases are never read ahead: the read-ahead would open and close
// them while their database's online backup holds POSIX locks on them (see prefetchable).
func TestSidecarsAreNotPrefetched(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"app.db", "app.db-shm", "app.db-wal", "app.db-journal", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		mode string
		want map[string]bool // prefetched?
	}{
		{SQLiteSnapshot, map[string]bool{"app.db": true, "app.db-shm": false, "app.db-wal": false, "app.db-journal": false, "notes.txt": true}},
		{SQLiteSkip, map[string]bool{"app.db": true, "app.db-shm": false, "app.db-wal": false, "app.db-journal": false, "notes.txt": true}},
		{SQLiteRaw, map[string]bool{"app.db": true, "app.db-shm": true, "app.db-wal": true, "app.db-journal": true, "notes.txt": true}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			src, err := New("data", dir, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if src, err = src.WithSQLite(tc.mode, t.TempDir()); err != nil {
				t.Fatal(err)
			}
			got := map[string]bool{}
			err = src.walkPrefetched(context.Background(), func(e entry, pf *prefetched) error {
				got[e.rel] = pf != nil
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range tc.want {
				if got[name] != want {
					t.Errorf("%s: prefetched %v, want %v", name, got[name], want)
				}
			}
		})
	}
}
