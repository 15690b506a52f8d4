package tree

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestWalkSortsAcrossBatches lists a folder of more names than one read returns, in an
// order the filesystem does not keep, and checks the walk gives them byte-wise sorted,
// each once, with its folder's entries right after the folder.
func TestWalkSortsAcrossBatches(t *testing.T) {
	dir := t.TempDir()
	var want []string
	n := 2*direntBatch + 300
	for i := range n {
		name := fmt.Sprintf("f%05d", (i*7919)%n) // not created in order
		mkfile(t, filepath.Join(dir, "big", name), "x")
	}
	mkfile(t, filepath.Join(dir, "B", "x"), "x") // "B" < "a" < "big" byte-wise
	mkfile(t, filepath.Join(dir, "a"), "x")
	want = append(want, "B", "B/x", "a", "big")
	for i := range n {
		want = append(want, fmt.Sprintf("big/f%05d", i))
	}
	s, _ := New("d", dir, nil, nil)
	for _, statFiles := range []bool{false, true} {
		var got []string
		err := s.walk(context.Background(), statFiles, func(e entry) error {
			if e.abs != filepath.Join(dir, e.rel) {
				t.Errorf("entry %q: abs %q", e.rel, e.abs)
			}
			isDir := e.rel == "B" || e.rel == "big"
			if (e.info != nil) != (statFiles || isDir) || isDir && !e.info.IsDir() {
				t.Errorf("entry %q: info %v with statFiles %v", e.rel, e.info, statFiles)
			}
			got = append(got, e.rel)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("statFiles %v: %d entries, want %d; first %q", statFiles, len(got), len(want), got[:min(5, len(got))])
		}
	}
}

// TestWalkFromFilesystemRoot checks the names under "/" (no doubled separator) without
// walking the whole machine: the walk stops at the first entry.
func TestWalkFromFilesystemRoot(t *testing.T) {
	s, _ := New("d", "/", nil, nil)
	stop := fmt.Errorf("stop")
	err := s.walk(context.Background(), false, func(e entry) error {
		if e.abs != "/"+e.rel || strings.Contains(e.rel, "/") {
			t.Errorf("entry %q: abs %q", e.rel, e.abs)
		}
		return stop
	})
	if err != stop {
		t.Fatalf("walk: %v", err)
	}
}
