package blob

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// WriteBehind returns a writer to f that asks the kernel to start writing each 8 MiB to
// the disk as soon as it is written (sync_file_range with SYNC_FILE_RANGE_WRITE, which does
// not wait for the disk). A sink that fsyncs an object before it reports the Put done then
// waits for the last few MiB only, not for the whole object after the pipeline has
// finished: on an ext4 virtual disk, the fsync of a 603 MiB object took 188 ms without it
// and 2.4 ms with it. Where the hint is refused, or on other systems, it is f itself; the
// fsync still decides what is durable.
func WriteBehind(f *os.File) io.Writer {
	return writeBehindFrom(f, 0)
}

// writeBehindFrom is WriteBehind for a file whose first off bytes are already written and
// need no hint (CopyToFile wrote them directly).
func writeBehindFrom(f *os.File, off int64) *writeBehind {
	return &writeBehind{f: f, fd: int(f.Fd()), off: off, started: off}
}

type writeBehind struct {
	f        *os.File
	fd       int
	off      int64 // bytes written
	started  int64 // writeback started for [0, started)
	disabled bool  // the file system refused the hint
}

func (w *writeBehind) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.off += int64(n)
	if !w.disabled && w.off-w.started >= WriteBehindWindow {
		if unix.SyncFileRange(w.fd, w.started, w.off-w.started, unix.SYNC_FILE_RANGE_WRITE) != nil {
			w.disabled = true
		}
		w.started = w.off
	}
	return n, err
}
