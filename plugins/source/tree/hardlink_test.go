package tree

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// linkedTree makes a tree with hard links: a large file (read by the streaming path) with
// two more names, a small one (read ahead) with one more, a file whose first name is
// excluded, and a file linked from outside the tree. It returns the root.
func linkedTree(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "root")
	big := strings.Repeat("0123456789abcdef", (prefetchMax+4096)/16)
	mkfile(t, filepath.Join(dir, "a/big"), big)
	mkfile(t, filepath.Join(dir, "small"), "small file")
	mkfile(t, filepath.Join(dir, "a/skip.tmp"), "first name excluded")
	mkfile(t, filepath.Join(dir, "plain"), "one name")
	outside := filepath.Join(filepath.Dir(dir), "outside")
	mkfile(t, outside, "named outside the tree too")
	for _, l := range [][2]string{
		{"a/big", "b/big2"}, {"a/big", "z-big"}, {"small", "small2"},
		{"a/skip.tmp", "c/kept"}, {outside, "in"},
	} {
		from := l[0]
		if !filepath.IsAbs(from) {
			from = filepath.Join(dir, from)
		}
		to := filepath.Join(dir, l[1])
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(from, to); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestHardLinksStoredOnce(t *testing.T) {
	dir := linkedTree(t)
	s, err := New("d", dir, []string{"*.tmp"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	meta, err := s.Snapshot(context.Background(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	// Each file's data once, under its first name in the sorted walk; later names link to it.
	want := map[string]string{ // name -> link target; "" for a file with its data
		"a/big": "", "b/big2": "a/big", "z-big": "a/big", "small": "", "small2": "small",
		"c/kept": "", "in": "", "plain": "",
	}
	tr := tar.NewReader(bytes.NewReader(buf.Bytes()))
	got := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch h.Typeflag {
		case tar.TypeReg:
			got[h.Name] = ""
		case tar.TypeLink:
			got[h.Name] = h.Linkname
			if h.Size != 0 {
				t.Errorf("%s: a hard link entry with %d bytes of data", h.Name, h.Size)
			}
		}
	}
	for name, link := range want {
		if g, ok := got[name]; !ok || g != link {
			t.Errorf("%s: stored as %q (present %v), want %q", name, g, ok, link)
		}
	}
	if len(got) != len(want) {
		t.Errorf("entries %v, want %v", got, want)
	}
	if meta["files"] != "5" || meta["hardlinks"] != "3" {
		t.Errorf("meta files=%s hardlinks=%s, want 5 and 3", meta["files"], meta["hardlinks"])
	}
	// The estimate counts the data once too: within the headers' size of the real stream.
	if est := s.EstimateSize(context.Background()); est < int64(buf.Len()) || est > int64(buf.Len())+8*512 {
		t.Errorf("estimate %d for a stream of %d bytes", est, buf.Len())
	}
	if err := s.Check(context.Background(), bytes.NewReader(buf.Bytes())); err != nil {
		t.Errorf("check: %v", err)
	}

	// Restored, the names are one file again, by nightjar (with and without --force, over
	// a first restore) and by GNU tar.
	target := t.TempDir()
	for _, force := range []bool{false, true} {
		if err := Extract(context.Background(), bytes.NewReader(buf.Bytes()), target, force); err != nil {
			t.Fatalf("extract (force %v): %v", force, err)
		}
		checkLinked(t, dir, target)
	}
	// GNU tar is part of every Debian system (and of CI): a missing one fails the test.
	gnu := t.TempDir()
	cmd := exec.Command("tar", "-xf", "-", "-C", gnu)
	cmd.Stdin, cmd.Env = bytes.NewReader(buf.Bytes()), []string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C"}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tar -x: %v: %s", err, out)
	}
	checkLinked(t, dir, gnu)
}

// checkLinked checks that the restored names in got hold the data and are the same file
// where they are in the tree src.
func checkLinked(t *testing.T, src, got string) {
	t.Helper()
	for _, group := range [][]string{{"a/big", "b/big2", "z-big"}, {"small", "small2"}, {"c/kept"}, {"in"}} {
		want, err := os.ReadFile(filepath.Join(src, group[0]))
		if err != nil {
			t.Fatal(err)
		}
		first, err := os.Stat(filepath.Join(got, group[0]))
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range group {
			b, err := os.ReadFile(filepath.Join(got, name))
			if err != nil || !bytes.Equal(b, want) {
				t.Errorf("%s: restored %d bytes (%v), want the %d of the tree", name, len(b), err, len(want))
			}
			if info, err := os.Stat(filepath.Join(got, name)); err != nil || !os.SameFile(info, first) {
				t.Errorf("%s is not restored as another name of %s", name, group[0])
			}
		}
	}
}

func TestHardLinkOutsideTargetRefused(t *testing.T) {
	for _, link := range []string{"../escape", "/etc/passwd", "a/../../x"} {
		arch := makeTar(t, []tarEntry{{name: "a"}, {name: "b", hard: link}})
		s, _ := New("d", t.TempDir(), nil, nil)
		if err := s.Check(context.Background(), bytes.NewReader(arch)); err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("check of a link to %q: %v", link, err)
		}
		if err := Extract(context.Background(), bytes.NewReader(arch), t.TempDir(), false); err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("extract of a link to %q: %v", link, err)
		}
	}
	// A link to a name that is not in the archive fails with its name.
	arch := makeTar(t, []tarEntry{{name: "b", hard: "missing"}})
	if err := Extract(context.Background(), bytes.NewReader(arch), t.TempDir(), false); err == nil || !strings.Contains(err.Error(), "extract b: hard link to missing") {
		t.Errorf("extract of a link to a missing file: %v", err)
	}
}

// TestLinksForgetMetFiles: an entry goes when its file's last name is met, so the table
// holds only the files whose other names are still to come.
func TestLinksForgetMetFiles(t *testing.T) {
	l := links{}
	a, b := fileID{dev: 1, ino: 10}, fileID{dev: 1, ino: 11}
	l.add(a, 3, "a")
	l.add(b, 2, "b")
	steps := []struct {
		id       fileID
		want     string
		wantOK   bool
		wantSize int
	}{
		{a, "a", true, 2},
		{b, "b", true, 1}, // b's last name: gone
		{b, "", false, 1}, // a name made after the walk counted: stored with its data
		{a, "a", true, 0},
		{a, "", false, 0},
	}
	for i, s := range steps {
		got, ok := l.next(s.id)
		if got != s.want || ok != s.wantOK || len(l) != s.wantSize {
			t.Errorf("step %d: next(%v) = %q, %v with %d left; want %q, %v with %d", i, s.id, got, ok, len(l), s.want, s.wantOK, s.wantSize)
		}
	}
}
