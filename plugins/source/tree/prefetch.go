package tree

import (
	"archive/tar"
	"context"
	"fmt"
	"io/fs"
	"path"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nightjar-backup/nightjar/plugins/internal/sqlitecopy"
)

// Small files cost more in system calls (open, fstat, read, close) than in bytes, and one
// goroutine doing them one after another leaves the compressors idle. So the walk runs
// ahead of the tar writer and a few goroutines read small files into memory in parallel;
// the tar writer still takes every entry in sorted order. Memory stays bounded:
// at most about 2*prefetchDepth+prefetchWorkers files of at most prefetchMax bytes.
const (
	prefetchMax     = 128 << 10
	prefetchDepth   = 32
	prefetchWorkers = 4
)

// prefetched is a small file read ahead: its contents and its state before and after.
type prefetched struct {
	ready    chan struct{} // closed when the fields below are set
	data     []byte
	info     *statInfo // fstat of the open file, before reading; nil unless read ahead
	changed  bool      // fstat after reading differs from before
	err      error
	fallback bool // not a small regular file: the writer reads it itself
}

// buffers recycles the buffers of files read ahead: allocating one per file (zeroed,
// then overwritten by the read) was a third of a small-file backup's allocations. It
// holds at most as many as can be in flight, each of prefetchMax bytes; only the part
// that files used is ever touched.
type buffers chan []byte

func newBuffers() buffers { return make(buffers, 2*prefetchDepth+prefetchWorkers+1) }

func (b buffers) get() []byte {
	select {
	case buf := <-b:
		return buf
	default:
		return make([]byte, prefetchMax)
	}
}

// put returns a buffer from get once its data has been written; nil is ignored.
func (b buffers) put(buf []byte) {
	if cap(buf) < prefetchMax {
		return
	}
	select {
	case b <- buf[:prefetchMax]:
	default:
	}
}

// read fills pf from the file at p, into a buffer from bufs. It works on the bare
// descriptor: an *os.File would add an fcntl, a finalizer and the poller's bookkeeping to
// each of thousands of small files, for a descriptor that lives for three system calls.
func (pf *prefetched) read(p string, bufs buffers) {
	defer close(pf.ready)
	// O_NOFOLLOW and O_NONBLOCK: the file may have been replaced since the folder was
	// read, by a symlink (refused here, and stored as one by the writer) or by a FIFO,
	// which would block a plain open until some writer came.
	fd, err := retryEINTR(func() (int, error) {
		return unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	})
	if err == unix.ELOOP {
		pf.fallback = true
		return
	}
	if err != nil {
		pf.err = &fs.PathError{Op: "open", Path: p, Err: err}
		return
	}
	defer unix.Close(fd)
	var before, after syscall.Stat_t
	if err := syscall.Fstat(fd, &before); err != nil {
		pf.err = &fs.PathError{Op: "fstat", Path: p, Err: err}
		return
	}
	if before.Mode&syscall.S_IFMT != syscall.S_IFREG || before.Size > prefetchMax {
		pf.fallback = true
		return
	}
	pf.info = &statInfo{name: path.Base(p), st: before}
	pf.data = bufs.get()[:before.Size]
	n := 0
	for n < len(pf.data) {
		k, err := retryEINTR(func() (int, error) { return unix.Read(fd, pf.data[n:]) })
		if err != nil {
			pf.err = &fs.PathError{Op: "read", Path: p, Err: err}
			return
		}
		if k == 0 {
			break // shorter than its header if it shrank while read
		}
		n += k
	}
	pf.data = pf.data[:n]
	if syscall.Fstat(fd, &after) == nil {
		pf.changed = after.Size != before.Size || after.Mtim != before.Mtim
	}
}

func retryEINTR(f func() (int, error)) (int, error) {
	for {
		n, err := f()
		if err != unix.EINTR {
			return n, err
		}
	}
}

// prefetchable reports whether a file may be read ahead. A SQLite sidecar (-wal, -shm,
// -journal) never is: it follows its database in the walk, so a reader would open and close
// it while the database's online backup runs, and closing any descriptor of a file drops
// every POSIX lock this process holds on it, SQLite's WAL read lock on -shm included. A
// writer may then checkpoint over pages the backup is still reading, and the copy is torn.
func (s *Source) prefetchable(e entry) bool {
	if e.info != nil && (!e.info.Mode().IsRegular() || e.info.Size() > prefetchMax) {
		return false
	}
	if _, sidecar := sidecarOf(e.abs); sidecar && s.sqlite != SQLiteRaw {
		return false
	}
	return true
}

type walkItem struct {
	e  entry
	pf *prefetched // nil unless a small regular file
}

// walkPrefetched is walk, with small regular files read ahead in parallel. fn runs on the
// calling goroutine, in walk order. Each read ahead holds dbCopy for reading.
func (s *Source) walkPrefetched(ctx context.Context, dbCopy *sync.RWMutex, fn func(e entry, pf *prefetched) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	items := make(chan walkItem, prefetchDepth)
	work := make(chan walkItem, prefetchDepth)
	bufs := newBuffers()
	var wg sync.WaitGroup
	for range prefetchWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range work {
				dbCopy.RLock()
				it.pf.read(it.e.abs, bufs)
				dbCopy.RUnlock()
			}
		}()
	}
	var walkErr error
	go func() {
		defer close(items)
		defer close(work)
		walkErr = s.walk(ctx, false, func(e entry) error {
			it := walkItem{e: e}
			if s.prefetchable(e) {
				it.pf = &prefetched{ready: make(chan struct{})}
				select {
				case work <- it:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			select {
			case items <- it:
			case <-ctx.Done():
				return ctx.Err()
			}
			return nil
		})
	}()
	var err error
	for it := range items {
		if err != nil {
			continue // drain: the walk stops at the cancel
		}
		if it.pf != nil {
			<-it.pf.ready
		}
		if err = fn(it.e, it.pf); err != nil {
			cancel()
		}
		if it.pf != nil {
			bufs.put(it.pf.data)
			it.pf.data = nil
		}
	}
	wg.Wait()
	if err != nil {
		return err
	}
	return walkErr // written before items was closed
}

// writePrefetched writes a small file read ahead, with the same checks as the streaming
// path: h was made from the fstat of the open file (pf.info), a change while read is
// reported.
func (s *Source) writePrefetched(tw *tarWriter, h *tar.Header, e entry, pf *prefetched, st *stats, buf []byte) error {
	if pf.err != nil {
		return fmt.Errorf("cannot read %s: %w", e.abs, unwrapPathErr(pf.err))
	}
	if err := s.writeHeader(tw, h, e.rel); err != nil {
		return err
	}
	if _, err := tw.Write(pf.data); err != nil {
		return fmt.Errorf("write %s: %w", e.rel, err)
	}
	changed := int64(len(pf.data)) < h.Size
	if changed {
		if err := zeroFill(tw, h.Size-int64(len(pf.data)), buf); err != nil {
			return fmt.Errorf("write %s: %w", e.rel, err)
		}
	}
	if pf.changed {
		changed = true
	}
	s.fileDone(st, e, h, changed)
	return nil
}

// needsStreaming reports whether a small file read ahead must take the streaming path
// after all, where the SQLite handling (sqlite.go) decides about databases and their
// -wal/-journal sidecars.
func (s *Source) needsStreaming(e entry, pf *prefetched) bool {
	if s.sqlite == SQLiteRaw {
		return false
	}
	if _, ok := sidecarOf(e.abs); ok {
		return true
	}
	n := len(sqlitecopy.Header)
	return len(pf.data) >= n && string(pf.data[:n]) == sqlitecopy.Header
}

// statInfo is the fs.FileInfo of a regular file read ahead, from the fstat of its open
// descriptor.
type statInfo struct {
	name string
	st   syscall.Stat_t
}

func (i *statInfo) Name() string       { return i.name }
func (i *statInfo) Size() int64        { return i.st.Size }
func (i *statInfo) ModTime() time.Time { return time.Unix(i.st.Mtim.Unix()) }
func (i *statInfo) IsDir() bool        { return false }
func (i *statInfo) Sys() any           { return &i.st }

// Mode is that of a regular file: the permissions and the setuid, setgid and sticky bits.
func (i *statInfo) Mode() fs.FileMode {
	m := fs.FileMode(i.st.Mode & 0o777)
	if i.st.Mode&syscall.S_ISUID != 0 {
		m |= fs.ModeSetuid
	}
	if i.st.Mode&syscall.S_ISGID != 0 {
		m |= fs.ModeSetgid
	}
	if i.st.Mode&syscall.S_ISVTX != 0 {
		m |= fs.ModeSticky
	}
	return m
}
