package tree

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// headerCase is one entry for both writers: a header and, for files, data of its size.
type headerCase struct {
	h    tar.Header
	data bool // write h.Size bytes of data after the header
}

// writeBoth writes entries with archive/tar and with tarWriter and returns both streams.
func writeBoth(t *testing.T, entries []headerCase) (want, got []byte) {
	t.Helper()
	var a, b bytes.Buffer
	tw, ours := tar.NewWriter(&a), newTarWriter(&b)
	for i, e := range entries {
		h1, h2 := e.h, e.h // the writers must not see each other's changes
		errA, errB := tw.WriteHeader(&h1), ours.WriteHeader(&h2)
		if (errA == nil) != (errB == nil) {
			t.Fatalf("entry %d (%q): archive/tar says %v, tarWriter %v", i, e.h.Name, errA, errB)
		}
		if errA != nil || !e.data {
			continue
		}
		data := bytes.Repeat([]byte{byte('a' + i%26)}, int(e.h.Size))
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
		if _, err := ours.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ours.Close(); err != nil {
		t.Fatal(err)
	}
	return a.Bytes(), b.Bytes()
}

// TestTarWriterMatchesArchiveTar checks that tarWriter writes exactly what archive/tar
// writes, for the headers it formats itself and for those it leaves to archive/tar.
func TestTarWriterMatchesArchiveTar(t *testing.T) {
	mtime := time.Unix(1764750000, 0)
	file := func(name string, size int64) headerCase {
		return headerCase{h: tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644, Uid: 1000, Gid: 1000, ModTime: mtime}, data: true}
	}
	with := func(e headerCase, f func(h *tar.Header)) headerCase { f(&e.h); return e }
	cases := map[string]headerCase{
		"small file":              file("a.txt", 10),
		"empty file":              file("empty", 0),
		"one block":               file("b", 512),
		"over a block":            file("c/d/e.bin", 1000),
		"folder":                  {h: tar.Header{Typeflag: tar.TypeDir, Name: "c/d/", Mode: 0o755, ModTime: mtime}},
		"symlink":                 {h: tar.Header{Typeflag: tar.TypeSymlink, Name: "l", Linkname: "../x/y", Mode: 0o777, ModTime: mtime}},
		"name of 100 bytes":       file(strings.Repeat("n", 100), 3),
		"name split into prefix":  file(strings.Repeat("p", 60)+"/"+strings.Repeat("n", 60), 3),
		"name too long for ustar": file(strings.Repeat("q/", 150)+"f", 3),
		"non-ASCII name":          file("café/naïve.txt", 3),
		"link of 101 bytes":       {h: tar.Header{Typeflag: tar.TypeSymlink, Name: "l2", Linkname: strings.Repeat("t", 101), ModTime: mtime}},
		"hard link":               {h: tar.Header{Typeflag: tar.TypeLink, Name: "h", Linkname: "c/d/e.bin", Mode: 0o644, Uid: 1000, Gid: 1000, ModTime: mtime}},
		"hard link, long target":  {h: tar.Header{Typeflag: tar.TypeLink, Name: "h2", Linkname: strings.Repeat("t/", 60), Mode: 0o644, ModTime: mtime}},
		"setuid, sticky":          with(file("s", 1), func(h *tar.Header) { h.Mode = 0o7755 }),
		"large uid":               with(file("u", 1), func(h *tar.Header) { h.Uid = 3_000_000 }),
		"largest ustar uid":       with(file("u2", 1), func(h *tar.Header) { h.Uid = 1<<21 - 1 }),
		"root":                    with(file("r", 1), func(h *tar.Header) { h.Uid, h.Gid = 0, 0 }),
		"sub-second mtime":        with(file("ns", 1), func(h *tar.Header) { h.ModTime = mtime.Add(700 * time.Millisecond) }),
		"PAX asked for":           with(file("pax", 1), func(h *tar.Header) { h.Format = tar.FormatPAX; h.ModTime = mtime.Add(time.Nanosecond) }),
		"mtime before 1970":       with(file("old", 1), func(h *tar.Header) { h.ModTime = time.Unix(-86400, 0) }),
		"mtime past ustar":        with(file("future", 1), func(h *tar.Header) { h.ModTime = time.Unix(1<<33+5, 0) }),
		"user and group names":    with(file("names", 1), func(h *tar.Header) { h.Uname, h.Gname = "alice", "staff" }),
		"file name ending in /":   file("notadir/", 1),
		"NUL in name":             file("a\x00b", 1),
	}
	for name, e := range cases {
		t.Run(name, func(t *testing.T) {
			// each case both alone and between two ordinary entries
			for _, entries := range [][]headerCase{{e}, {file("before", 700), e, file("after", 5)}} {
				want, got := writeBoth(t, entries)
				if !bytes.Equal(want, got) {
					t.Fatalf("streams differ: archive/tar %d bytes, tarWriter %d\n%s", len(want), len(got), firstDiff(want, got))
				}
			}
		})
	}
}

// TestTarWriterMatchesArchiveTarRandom compares the writers on random trees of ordinary
// entries: the path nearly every header of a real tree takes.
func TestTarWriterMatchesArchiveTarRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const chars = "abcXYZ019-_./ "
	for round := range 50 {
		var entries []headerCase
		for range 40 {
			var name strings.Builder
			for range 1 + r.IntN(130) {
				name.WriteByte(chars[r.IntN(len(chars))])
			}
			h := tar.Header{Name: strings.Trim(name.String(), "/"), Mode: r.Int64N(0o10000),
				Uid: r.IntN(1 << 22), Gid: r.IntN(70000), ModTime: time.Unix(r.Int64N(1<<34)-1<<30, 0)}
			switch r.IntN(4) {
			case 0:
				h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
			case 1:
				h.Typeflag, h.Linkname = tar.TypeSymlink, strings.Repeat("../", r.IntN(40))+"t"
			case 2:
				h.Typeflag, h.Size = tar.TypeReg, r.Int64N(3000)
			default: // around and above directWrite, written past the buffer
				h.Typeflag, h.Size = tar.TypeReg, directWrite-600+r.Int64N(3*directWrite)
			}
			entries = append(entries, headerCase{h: h, data: h.Typeflag == tar.TypeReg})
		}
		want, got := writeBoth(t, entries)
		if !bytes.Equal(want, got) {
			t.Fatalf("round %d: streams differ\n%s", round, firstDiff(want, got))
		}
	}
}

// writeLog records each Write's first byte's address and length.
type writeLog struct {
	bytes.Buffer
	writes []struct {
		first *byte
		n     int
	}
}

func (w *writeLog) Write(p []byte) (int, error) {
	if len(p) > 0 {
		w.writes = append(w.writes, struct {
			first *byte
			n     int
		}{&p[0], len(p)})
	}
	return w.Buffer.Write(p)
}

// TestTarWriterWritesLargeDataThrough checks that a large write goes downstream as the
// caller's slice, after the header it follows, rather than copied into the buffer.
func TestTarWriterWritesLargeDataThrough(t *testing.T) {
	for _, size := range []int{directWrite, 200 << 10} {
		var w writeLog
		tw := newTarWriter(&w)
		data := bytes.Repeat([]byte{'x'}, size)
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "f", Size: int64(size), Mode: 0o644, ModTime: time.Unix(1764750000, 0)}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		through := false
		for _, wr := range w.writes {
			through = through || (wr.first == &data[0] && wr.n == size)
		}
		if !through {
			t.Errorf("%d bytes: not written through as one slice; writes: %v", size, w.writes)
		}
		if got := w.Len(); got != blockSize+size+(-size&(blockSize-1))+2*blockSize {
			t.Errorf("%d bytes: stream of %d bytes", size, got)
		}
	}
}

// TestTarWriterRefusesWrongSizes checks the size rules archive/tar enforces: no more data
// than the header announced, and none missing at the next header or the end.
func TestTarWriterRefusesWrongSizes(t *testing.T) {
	tw := newTarWriter(&bytes.Buffer{})
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "f", Size: 4, ModTime: time.Unix(0, 0)}); err != nil {
		t.Fatal(err)
	}
	if n, err := tw.Write([]byte("12345")); n != 4 || !errors.Is(err, tar.ErrWriteTooLong) {
		t.Fatalf("a write past the size: %d, %v", n, err)
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "g", Size: 4, ModTime: time.Unix(0, 0)}); err != nil {
		t.Fatal(err)
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "h", ModTime: time.Unix(0, 0)}); err == nil {
		t.Fatal("a header after an entry with its data missing was accepted")
	}
	if err := tw.Close(); err == nil {
		t.Fatal("Close after an entry with its data missing succeeded")
	}
}

func firstDiff(a, b []byte) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("first difference at byte %d (block %d, offset %d): %q against %q", i, i/512, i%512, a[i], b[i])
		}
	}
	return "one is a prefix of the other"
}
