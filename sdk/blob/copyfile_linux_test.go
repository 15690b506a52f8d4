package blob

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"unsafe"

	"golang.org/x/sys/unix"
)

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i ^ i>>9 ^ i>>17)
	}
	return b
}

// directOn turns on O_DIRECT for f, or skips the test where the file system does not take
// it (the test runs on whatever the temporary folder is).
func directOn(t *testing.T, f *os.File) *directWriter {
	t.Helper()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	w, err := startDirect(f, rc)
	if err != nil {
		t.Skipf("%s does not take O_DIRECT: %v", filepath.Dir(f.Name()), err)
	}
	return w
}

// directSizes cross every boundary the direct path has: a block, a buffer, two buffers.
var directSizes = []int{0, 1, directAlign - 1, directAlign, directAlign + 1, copyBuffer - 1, copyBuffer,
	copyBuffer + 1, 2*copyBuffer + directAlign, 3*copyBuffer + copyBuffer/2 + 7}

// The direct path stores exactly what it reads, whatever the size and however the reader
// splits it. It runs wherever the temporary folder's file system takes O_DIRECT (ext4,
// XFS, tmpfs since Linux 6.6), whichever file system CopyToFile itself would choose it for.
func TestDirectWriterContent(t *testing.T) {
	dir := t.TempDir()
	for _, size := range directSizes {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			want := pattern(size)
			f, err := os.Create(filepath.Join(dir, fmt.Sprint(size)))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			w := directOn(t, f)
			n, err := w.copy(iotest.HalfReader(bytes.NewReader(want)))
			if err != nil || n != int64(size) {
				t.Fatalf("copy: %d of %d bytes, %v", n, size, err)
			}
			if w.direct != (size%directAlign == 0) {
				t.Errorf("still direct after the copy: %v, want %v (only a whole last block keeps it)", w.direct, size%directAlign == 0)
			}
			got, err := os.ReadFile(f.Name())
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("read back %d of %d bytes, equal %v, %v", len(got), size, bytes.Equal(got, want), err)
			}
		})
	}
}

// A direct write the file system refuses (here: the file offset is not a block's) is
// written through the page cache instead, and nothing is lost or doubled.
func TestDirectWriterFallsBack(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "obj"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	w := directOn(t, f)
	data := pattern(2*copyBuffer + 5)
	if n, err := w.copy(bytes.NewReader(data)); err != nil || n != int64(len(data)) {
		t.Fatalf("copy: %d, %v", n, err)
	}
	if w.direct {
		t.Error("still direct after a refused write")
	}
	got, err := os.ReadFile(f.Name())
	if err != nil || !bytes.Equal(got, append([]byte("x"), data...)) {
		t.Fatalf("read back %d of %d bytes, %v", len(got), len(data)+1, err)
	}
}

// A failed write stops the copy: its error is returned, and the reader is not drained to
// the end first.
func TestDirectWriterWriteError(t *testing.T) {
	p := filepath.Join(t.TempDir(), "obj")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p) // read-only: every write fails with EBADF
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := directOn(t, f)
	const total = 256 * copyBuffer
	r := &countingReader{r: io.LimitReader(zeros{}, total)}
	if _, err := w.copy(r); !errors.Is(err, unix.EBADF) {
		t.Fatalf("copy into a read-only file: %v, want EBADF", err)
	}
	if r.n > 8*copyBuffer {
		t.Errorf("read %d bytes after the first write failed", r.n)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// On ext4 and XFS, CopyToFile's data does not pass through the page cache: right after the
// copy, before anything reads the file, its whole blocks are not resident (mincore). The
// test needs such a file system: the temporary folder, or else the package's own folder.
func TestCopyToFileSkipsPageCache(t *testing.T) {
	var dir string
	for _, d := range []string{os.TempDir(), "."} {
		var st unix.Statfs_t
		if unix.Statfs(d, &st) == nil && directType(&st) {
			dir = d
			break
		}
	}
	if dir == "" {
		t.Skip("neither the temporary folder nor this one is on ext4 or XFS")
	}
	tmp, err := os.MkdirTemp(dir, "copyfile-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	f, err := os.Create(filepath.Join(tmp, "obj"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 8*copyBuffer + 100
	if n, err := CopyToFile(f, bytes.NewReader(pattern(size))); err != nil || n != size {
		t.Fatalf("copy: %d, %v", n, err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (size+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(unsafe.SliceData(m))), uintptr(len(m)),
		uintptr(unsafe.Pointer(unsafe.SliceData(vec)))); errno != 0 {
		t.Fatal("mincore:", errno)
	}
	resident := 0
	for _, v := range vec {
		resident += int(v & 1)
	}
	if resident > 1 { // the partial last block went through the page cache
		t.Errorf("%d of %d pages are in the page cache after the copy; want at most the last", resident, len(vec))
	}
	got, err := os.ReadFile(f.Name())
	if err != nil || !bytes.Equal(got, pattern(size)) {
		t.Fatalf("read back %d of %d bytes, %v", len(got), size, err)
	}
}

// The direct path flushes behind its writes: a copy of many flush intervals calls sync in
// the background (at least once; at most once an interval), and a flush's error is the
// copy's error even though every write succeeded.
func TestDirectWriterFlushesBehind(t *testing.T) {
	boom := errors.New("flush failed")
	for _, tc := range []struct {
		name    string
		syncErr error
	}{{"ok", nil}, {"error", boom}} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.Create(filepath.Join(t.TempDir(), "obj"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			w := directOn(t, f)
			var calls atomic.Int32
			w.flushEvery = 2 * copyBuffer
			w.sync = func() error { calls.Add(1); return tc.syncErr }
			const size = 16 * copyBuffer
			n, err := w.copy(bytes.NewReader(pattern(size)))
			if !errors.Is(err, tc.syncErr) || (tc.syncErr == nil) != (err == nil) {
				t.Fatalf("copy: %v, want %v", err, tc.syncErr)
			}
			if c := calls.Load(); c < 1 || c > size/(2*copyBuffer) {
				t.Errorf("%d flushes for %d intervals, want 1 to %d", c, size/(2*copyBuffer), size/(2*copyBuffer))
			}
			if tc.syncErr != nil {
				return
			}
			got, err := os.ReadFile(f.Name())
			if err != nil || n != size || !bytes.Equal(got, pattern(size)) {
				t.Fatalf("copied %d, read back %d of %d bytes, %v", n, len(got), size, err)
			}
		})
	}
}
