package tree

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// tarEntry is a file (name, body), a symlink (link) or a hard link (hard: its target).
type tarEntry struct {
	name, body, link, hard string
}

func makeTar(t *testing.T, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(e.body))}
		if e.link != "" {
			h = &tar.Header{Name: e.name, Mode: 0o777, Typeflag: tar.TypeSymlink, Linkname: e.link}
		}
		if e.hard != "" {
			h = &tar.Header{Name: e.name, Mode: 0o644, Typeflag: tar.TypeLink, Linkname: e.hard}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Extract keeps the folder of the last file open; these archives leave and revisit
// folders, reach them through links, and try to leave the target through a link.
func TestExtractFolderChanges(t *testing.T) {
	tests := []struct {
		name    string
		entries []tarEntry
		want    map[string]string // files below the target and their contents
		wantErr bool
	}{
		{
			name:    "revisited folders",
			entries: []tarEntry{{name: "a/x", body: "1"}, {name: "b/c/y", body: "2"}, {name: "a/z", body: "3"}, {name: "top", body: "4"}, {name: "b/c/w", body: "5"}},
			want:    map[string]string{"a/x": "1", "b/c/y": "2", "a/z": "3", "top": "4", "b/c/w": "5"},
		},
		{
			name:    "folder reached through a link inside the target",
			entries: []tarEntry{{name: "a/x", body: "1"}, {name: "l", link: "a"}, {name: "l/y", body: "2"}},
			want:    map[string]string{"a/x": "1", "a/y": "2"},
		},
		{
			name:    "link out of the target",
			entries: []tarEntry{{name: "a/x", body: "1"}, {name: "out", link: "../outside"}, {name: "out/y", body: "2"}},
			wantErr: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			target := filepath.Join(base, "target")
			outside := filepath.Join(base, "outside")
			for _, d := range []string{target, outside} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			err := Extract(context.Background(), bytes.NewReader(makeTar(t, tc.entries)), target, false)
			t.Logf("Extract: %v", err)
			if tc.wantErr != (err != nil) {
				t.Fatalf("Extract: %v, want error %v", err, tc.wantErr)
			}
			if left, _ := os.ReadDir(outside); len(left) != 0 {
				t.Errorf("a file was written outside the target: %v", left)
			}
			for name, body := range tc.want {
				got, err := os.ReadFile(filepath.Join(target, name))
				if err != nil || string(got) != body {
					t.Errorf("%s = %q, %v; want %q", name, got, err, body)
				}
			}
		})
	}
}

// A --force restore over an earlier restore replaces every file's contents.
func TestExtractForceReplacesFiles(t *testing.T) {
	target := t.TempDir()
	first := makeTar(t, []tarEntry{{name: "a/x", body: "old x"}, {name: "a/y", body: "old y"}, {name: "b/z", body: "old z"}})
	second := makeTar(t, []tarEntry{{name: "a/x", body: "new x"}, {name: "a/y", body: "new y"}, {name: "b/z", body: "new z"}})
	if err := Extract(context.Background(), bytes.NewReader(first), target, false); err != nil {
		t.Fatal(err)
	}
	if err := Extract(context.Background(), bytes.NewReader(second), target, false); err == nil {
		t.Fatal("extract over existing files without force succeeded")
	}
	if err := Extract(context.Background(), bytes.NewReader(second), target, true); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"a/x": "new x", "a/y": "new y", "b/z": "new z"} {
		if got, err := os.ReadFile(filepath.Join(target, name)); err != nil || string(got) != body {
			t.Errorf("%s = %q, %v; want %q", name, got, err, body)
		}
	}
}

// Small files are created on several goroutines, each holding the folder it writes in
// open. These archives switch folders at almost every entry (so a folder is let go while
// files for it still wait), mix in large files (created in order by the reader), and
// meet a file that is already there.
func TestExtractSmallFilesInParallel(t *testing.T) {
	var entries []tarEntry
	want := map[string]string{}
	for i := range 3000 {
		name := fmt.Sprintf("d%d/sub%d/f%04d", i%7, i%3, i)
		body := strings.Repeat(strconv.Itoa(i), 1+i%50)
		if i%500 == 250 {
			body = strings.Repeat("L", prefetchMax+1) // above the size that goes to the writers
		}
		entries = append(entries, tarEntry{name: name, body: body})
		want[name] = body
	}
	archive := makeTar(t, entries)
	before := runtime.NumGoroutine()
	target := t.TempDir()
	if err := Extract(context.Background(), bytes.NewReader(archive), target, false); err != nil {
		t.Fatal(err)
	}
	for name, body := range want {
		got, err := os.ReadFile(filepath.Join(target, name))
		if err != nil || string(got) != body {
			t.Fatalf("%s = %.20q (%d bytes), %v; want %.20q (%d bytes)", name, got, len(got), err, body, len(body))
		}
	}

	target = t.TempDir()
	clash := entries[1234].name
	if err := os.MkdirAll(filepath.Join(target, filepath.Dir(clash)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(target, clash), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := Extract(context.Background(), bytes.NewReader(archive), target, false)
	if err == nil || !strings.Contains(err.Error(), clash) || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("Extract over an existing %s: %v", clash, err)
	}
	if got, _ := os.ReadFile(filepath.Join(target, clash)); string(got) != "mine" {
		t.Errorf("the existing file was changed: %q", got)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after Extract returned, %d before", n, before)
	}
}
