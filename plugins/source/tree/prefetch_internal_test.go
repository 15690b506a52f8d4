package tree

import (
	"archive/tar"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
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
			err = src.walkPrefetched(context.Background(), new(sync.RWMutex), func(e entry, pf *prefetched) error {
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

// The file writers take turns while most files are slow to create and work in parallel
// again once creates are fast.
func TestFileWritersSerializeWhileCreatesAreSlow(t *testing.T) {
	slow, fast := 2*slowCreate, slowCreate/10
	steps := []struct {
		d          time.Duration
		n          int
		wantSerial bool
	}{
		{fast, 100, false},                       // the score stays at 0
		{slow, slowSerial - 1, false},            // not yet a majority
		{slow, 1, true},                          // serial from slowSerial on
		{slow, 500, true},                        // the score stops at slowMax
		{fast, slowMax - slowParallel - 1, true}, // hysteresis: still serial above slowParallel
		{fast, 1, false},                         // parallel again
		{fast, 100, false},
	}
	w := &fileWriters{}
	for i, s := range steps {
		for range s.n {
			w.observe(s.d)
		}
		if got := w.serial.Load(); got != s.wantSerial {
			t.Fatalf("step %d (%d files of %v): serial %v, want %v (score %d)", i, s.n, s.d, got, s.wantSerial, w.slow.Load())
		}
		if n := w.slow.Load(); n < 0 || n > slowMax {
			t.Fatalf("step %d: score %d outside [0, %d]", i, n, slowMax)
		}
	}
}

// Files queued while the writers take turns are all created, each once.
func TestFileWritersCreateInTurns(t *testing.T) {
	dir := t.TempDir()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	held := &heldDir{f: d, fd: int(d.Fd())}
	held.refs.Store(1)
	w := newFileWriters(false)
	w.serial.Store(true)
	w.slow.Store(slowMax)
	for i := range 200 {
		body := strings.Repeat("x", i)
		h := &tar.Header{Name: fmt.Sprintf("f%03d", i), Mode: 0o640, Size: int64(len(body)), ModTime: time.Unix(1700000000, 0)}
		if err := w.submit(strings.NewReader(body), held, h.Name, h); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.wait(); err != nil {
		t.Fatal(err)
	}
	held.release()
	for i := range 200 {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("f%03d", i)))
		if err != nil || len(b) != i {
			t.Fatalf("f%03d: %d bytes, %v", i, len(b), err)
		}
	}
}

// While a database copy holds dbCopy, the read-ahead opens no file: a file it opened and
// closed could be another name (a hard link) of the database being copied, and the close
// would drop the copy's POSIX locks.
func TestReadAheadWaitsForDatabaseCopy(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := New("data", dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var dbCopy sync.RWMutex
	dbCopy.Lock()
	called := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- src.walkPrefetched(context.Background(), &dbCopy, func(e entry, pf *prefetched) error {
			called <- e.rel
			return nil
		})
	}()
	select {
	case name := <-called:
		t.Fatalf("%s was read ahead while a database copy held the lock", name)
	case <-time.After(300 * time.Millisecond):
	}
	dbCopy.Unlock()
	if name := <-called; name != "a.txt" {
		t.Fatalf("walk gave %q", name)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
