package tree

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func mkfile(t testing.TB, p, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func names(t *testing.T, b []byte) []string {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	var out []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, h.Name)
	}
}

func TestExclude(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"keep.txt", "drop.tmp", "cache/a", "sub/cache/b", "sub/keep.db", "sub/keep.db-wal", "logs/x.log"} {
		mkfile(t, filepath.Join(dir, p), p)
	}
	tests := []struct {
		exclude []string
		want    []string
	}{
		{nil, []string{"cache/", "cache/a", "drop.tmp", "keep.txt", "logs/", "logs/x.log", "sub/", "sub/cache/", "sub/cache/b", "sub/keep.db", "sub/keep.db-wal"}},
		{[]string{"*.tmp", "cache/"}, []string{"keep.txt", "logs/", "logs/x.log", "sub/", "sub/keep.db", "sub/keep.db-wal"}},
		{[]string{"sub/keep.db*", "logs"}, []string{"cache/", "cache/a", "drop.tmp", "keep.txt", "sub/", "sub/cache/", "sub/cache/b"}},
		{[]string{"keep.txt/"}, []string{"cache/", "cache/a", "drop.tmp", "keep.txt", "logs/", "logs/x.log", "sub/", "sub/cache/", "sub/cache/b", "sub/keep.db", "sub/keep.db-wal"}},
	}
	for _, tc := range tests {
		s, err := New("d", dir, tc.exclude, nil)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if _, err := s.Snapshot(context.Background(), &buf); err != nil {
			t.Fatal(err)
		}
		got := names(t, buf.Bytes())
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("exclude %v:\n got %v\nwant %v", tc.exclude, got, tc.want)
		}
		if !sort.StringsAreSorted(got) {
			t.Errorf("entries are not in sorted order: %v", got)
		}
	}
	if _, err := New("d", dir, []string{"[unclosed"}, nil); err == nil || !strings.Contains(err.Error(), "invalid exclude pattern") {
		t.Errorf("bad glob: %v", err)
	}
}

func TestSnapshotMetaAndEstimate(t *testing.T) {
	dir := t.TempDir()
	mkfile(t, filepath.Join(dir, "a"), strings.Repeat("x", 1000))
	mkfile(t, filepath.Join(dir, "d/b"), "yy")
	os.Symlink("a", filepath.Join(dir, "l"))
	s, _ := New("d", dir, nil, nil)
	var buf bytes.Buffer
	meta, err := s.Snapshot(context.Background(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	if meta["files"] != "2" || meta["dirs"] != "1" || meta["symlinks"] != "1" || meta["bytes"] != "1002" {
		t.Errorf("meta: %v", meta)
	}
	if est := s.EstimateSize(context.Background()); est < int64(buf.Len()) {
		t.Errorf("estimate %d is below the real size %d", est, buf.Len())
	}
	if err := s.Check(context.Background(), bytes.NewReader(buf.Bytes())); err != nil {
		t.Errorf("check of a good tar: %v", err)
	}
	if err := s.Check(context.Background(), bytes.NewReader(buf.Bytes()[:700])); err == nil {
		t.Error("check of a truncated tar passed")
	}
}

// hookWriter calls fn once after n bytes have gone through.
type hookWriter struct {
	w    io.Writer
	n    int
	fn   func()
	done bool
}

func (h *hookWriter) Write(p []byte) (int, error) {
	n, err := h.w.Write(p)
	h.n -= n
	if h.n <= 0 && !h.done {
		h.done = true
		h.fn()
	}
	return n, err
}

func TestChangedWhileRead(t *testing.T) {
	tests := []struct {
		name   string
		change func(p string)
	}{
		{"grows", func(p string) {
			f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			f.Write([]byte("more"))
			f.Close()
		}},
		{"shrinks", func(p string) { os.Truncate(p, 10) }},
		{"rewritten in place", func(p string) {
			f, _ := os.OpenFile(p, os.O_WRONLY, 0)
			f.WriteAt([]byte("changed"), 0)
			f.Close()
			os.Chtimes(p, time.Now().Add(time.Hour), time.Now().Add(time.Hour))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "big.log")
			mkfile(t, p, strings.Repeat("0123456789", 1<<20))
			os.Chtimes(p, time.Now().Add(-time.Hour), time.Now().Add(-time.Hour))
			mkfile(t, filepath.Join(dir, "z-after"), "after")
			s, _ := New("d", dir, nil, nil)
			var buf bytes.Buffer
			meta, err := s.Snapshot(context.Background(), &hookWriter{w: &buf, n: 4 << 10, fn: func() { tc.change(p) }})
			if err != nil {
				t.Fatal(err)
			}
			if meta["changed_while_read"] != "1" || meta["changed_files"] != "big.log" {
				t.Fatalf("meta: %v", meta)
			}
			// The archive stays valid: every entry reads to its end.
			if err := s.Check(context.Background(), bytes.NewReader(buf.Bytes())); err != nil {
				t.Fatal(err)
			}
			if got := names(t, buf.Bytes()); len(got) != 2 {
				t.Fatalf("entries: %v", got)
			}
		})
	}
}

func TestSnapshotErrors(t *testing.T) {
	dir := t.TempDir()
	mkfile(t, filepath.Join(dir, "f"), "x")
	for _, tc := range []struct{ root, want string }{
		{filepath.Join(dir, "missing"), "no such file or directory"},
		{filepath.Join(dir, "f"), "is not a directory"},
	} {
		s, _ := New("d", tc.root, nil, nil)
		if _, err := s.Snapshot(context.Background(), io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: want %q, got %v", tc.root, tc.want, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s, _ := New("d", dir, nil, nil)
	if _, err := s.Snapshot(ctx, io.Discard); err == nil {
		t.Error("a cancelled snapshot succeeded")
	}
}

// makeBenchTree writes files small and large (compressible text, random bytes).
func makeBenchTree(b testing.TB, dir string, small, large int) int64 {
	var total int64
	for i := 0; i < small; i++ {
		body := strings.Repeat("{\"k\": \"value\", \"n\": 12345}\n", 40)
		mkfile(b, filepath.Join(dir, "small", string(rune('a'+i%26)), "f"+itoa(i)+".json"), body)
		total += int64(len(body))
	}
	for i := 0; i < large; i++ {
		h := sha256.Sum256([]byte{byte(i)})
		body := bytes.Repeat(h[:], (8<<20)/32)
		mkfile(b, filepath.Join(dir, "large", "f"+itoa(i)+".bin"), string(body))
		total += int64(len(body))
	}
	return total
}

func itoa(i int) string { return strconv.Itoa(i) }

// BenchmarkSnapshot measures the tar writer over a tree of many small and a few large files.
func BenchmarkSnapshot(b *testing.B) {
	dir := b.TempDir()
	benchSnapshot(b, dir, makeBenchTree(b, dir, 2000, 8))
}

func benchSnapshot(b *testing.B, dir string, total int64) {
	s, _ := New("d", dir, nil, nil)
	b.SetBytes(total)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Snapshot(context.Background(), io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSnapshotSmallFiles measures the per-file cost: 6,000 files of 0.5-4 KiB in 60
// folders, where system calls and tar headers weigh more than the bytes.
func BenchmarkSnapshotSmallFiles(b *testing.B) {
	dir := b.TempDir()
	var total int64
	for i := range 6000 {
		body := strings.Repeat("small file body, ", 30+i%200)
		mkfile(b, filepath.Join(dir, "d"+itoa(i%60), "f"+itoa(i)+".txt"), body)
		total += int64(len(body))
	}
	benchSnapshot(b, dir, total)
}

// BenchmarkExtract measures restore of the same tree.
func BenchmarkExtract(b *testing.B) {
	dir := b.TempDir()
	total := makeBenchTree(b, dir, 2000, 8)
	s, _ := New("d", dir, nil, nil)
	var buf bytes.Buffer
	if _, err := s.Snapshot(context.Background(), &buf); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(total)
	b.ReportAllocs()
	for b.Loop() {
		target := b.TempDir()
		if err := Extract(context.Background(), bytes.NewReader(buf.Bytes()), target, false); err != nil {
			b.Fatal(err)
		}
	}
}

// TestTruncatedArchiveIsRefused cuts a tar at every block boundary (where archive/tar
// alone reports a clean end) and in between.
func TestTruncatedArchiveIsRefused(t *testing.T) {
	dir := t.TempDir()
	mkfile(t, filepath.Join(dir, "a"), strings.Repeat("x", 1500))
	mkfile(t, filepath.Join(dir, "b"), strings.Repeat("\x00", 2048)) // zeros that look like an end marker
	s, _ := New("d", dir, nil, nil)
	var buf bytes.Buffer
	if _, err := s.Snapshot(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	full := buf.Bytes()
	if err := Extract(context.Background(), bytes.NewReader(full), t.TempDir(), false); err != nil {
		t.Fatalf("extract of the whole archive: %v", err)
	}
	for n := 0; n < len(full); n += 256 {
		if err := s.Check(context.Background(), bytes.NewReader(full[:n])); err == nil {
			t.Errorf("check accepted the archive cut at %d of %d bytes", n, len(full))
		}
		if err := Extract(context.Background(), bytes.NewReader(full[:n]), t.TempDir(), false); err == nil {
			t.Errorf("extract accepted the archive cut at %d of %d bytes", n, len(full))
		}
	}
}

// TestPrefetchedFileChanges covers the read-ahead path of small files: one that shrank or
// was rewritten between the two fstat calls is reported, and the archive stays valid.
func TestPrefetchedFileChanges(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "small.txt")
	mkfile(t, p, "0123456789")
	s, _ := New("d", dir, nil, nil)
	for _, tc := range []struct {
		name   string
		mutate func(pf *prefetched)
	}{
		{"shrank", func(pf *prefetched) { pf.data = pf.data[:4] }},
		{"rewritten", func(pf *prefetched) { pf.changed = true }}, // as read records a second fstat that differs
	} {
		t.Run(tc.name, func(t *testing.T) {
			pf := &prefetched{ready: make(chan struct{})}
			pf.read(p, newBuffers())
			info, _ := os.Lstat(p)
			if pf.err != nil || pf.fallback || pf.changed || string(pf.data) != "0123456789" || pf.info == nil || pf.info.Size() != 10 || !pf.info.ModTime().Equal(info.ModTime()) {
				t.Fatalf("read of an unchanged file: %+v", pf)
			}
			tc.mutate(pf)
			e := entry{rel: "small.txt", abs: p, info: pf.info} // as writeEntry makes it
			h, _ := header(e)
			var buf bytes.Buffer
			tw := newTarWriter(&buf)
			var st stats
			if err := s.writePrefetched(tw, h, e, pf, &st, make([]byte, 1024)); err != nil {
				t.Fatal(err)
			}
			tw.Close()
			if st.changed != 1 || st.files != 1 {
				t.Fatalf("stats: changed %d, files %d", st.changed, st.files)
			}
			if err := s.Check(context.Background(), bytes.NewReader(buf.Bytes())); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A cancelled run stops inside a large file instead of reading it to its end.
func TestSnapshotStopsInsideLargeFileOnCancel(t *testing.T) {
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "big.img"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(64 << 30); err != nil { // sparse: 64 GiB that read as zeros
		t.Fatal(err)
	}
	f.Close()
	src, err := New("data", dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &cancelAfter{n: 8 << 20, cancel: cancel}
	_, err = src.Snapshot(ctx, w)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if w.written > 64<<20 {
		t.Fatalf("read %d bytes after cancel; it should stop within a few reads", w.written)
	}
}

// cancelAfter cancels once n bytes were written.
type cancelAfter struct {
	n, written int64
	cancel     func()
}

func (c *cancelAfter) Write(p []byte) (int, error) {
	c.written += int64(len(p))
	if c.written >= c.n {
		c.cancel()
	}
	return len(p), nil
}

// The headers of files read ahead come from the fstat of the open file, not from an lstat
// in the walk; they must say what an lstat says: mode bits, owner, size, mtime, type.
func TestHeadersMatchLstat(t *testing.T) {
	dir := t.TempDir()
	files := map[string]os.FileMode{
		"plain": 0o644, "private": 0o600, "suid": 0o4755 | os.ModeSetuid, "sgid": 0o2750 | os.ModeSetgid,
		"sticky": 0o1777 | os.ModeSticky, "empty": 0o640, "large": 0o664,
	}
	for name, mode := range files {
		body := strings.Repeat(name, 10)
		switch name {
		case "empty":
			body = ""
		case "large":
			body = strings.Repeat("L", prefetchMax+1) // streamed, not read ahead
		}
		p := filepath.Join(dir, "d", name)
		mkfile(t, p, body)
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		mt := time.Unix(1700000000+int64(len(name)), 0)
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("plain", filepath.Join(dir, "d", "link")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "d", "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := New("data", dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := src.Snapshot(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&buf)
	seen := 0
	for {
		got, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		rel := strings.TrimSuffix(got.Name, "/")
		info, err := os.Lstat(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		want, err := header(entry{rel: rel, abs: filepath.Join(dir, rel), info: info})
		if err != nil {
			t.Fatal(err)
		}
		if got.Typeflag != want.Typeflag || got.Mode != want.Mode || got.Uid != want.Uid || got.Gid != want.Gid ||
			got.Size != want.Size || !got.ModTime.Equal(want.ModTime.Truncate(time.Second)) || got.Linkname != want.Linkname {
			t.Errorf("%s: header %+v\nwant as from lstat %+v", rel, got, want)
		}
		seen++
	}
	if seen != len(files)+2 { // the files, d/ and the link; the FIFO is skipped
		t.Fatalf("%d entries in the archive, want %d", seen, len(files)+2)
	}
}
