package tree

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nightjar-backup/nightjar/core"
)

// safeName checks a tar entry name and returns it cleaned; names that are absolute or climb
// out of the target with ".." are refused.
func safeName(name string) (string, error) {
	if name == "" {
		return "", errors.New("empty entry name")
	}
	if strings.HasPrefix(name, "/") || filepath.IsAbs(name) || strings.Contains(name, "\\") {
		return "", fmt.Errorf("refusing entry %q: absolute path", name)
	}
	clean := path.Clean(name)
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("refusing entry %q: it escapes the target folder", name)
	}
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return "", fmt.Errorf("refusing entry %q: '..' in path", name)
		}
	}
	return clean, nil
}

// endReader remembers how a tar stream ended. archive/tar returns io.EOF both at the
// end-of-archive marker (two zero blocks) and when the stream simply stops at an entry
// boundary, so a truncated archive would look complete; this tells them apart.
type endReader struct {
	r    io.Reader
	n    int64
	tail [1024]byte // the last bytes read
	fill int
}

func (e *endReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	e.n += int64(n)
	b := p[:n]
	if len(b) >= len(e.tail) {
		copy(e.tail[:], b[len(b)-len(e.tail):])
		e.fill = len(e.tail)
	} else if n > 0 {
		keep := min(e.fill, len(e.tail)-len(b))
		copy(e.tail[:keep], e.tail[e.fill-keep:e.fill])
		copy(e.tail[keep:], b)
		e.fill = keep + len(b)
	}
	return n, err
}

// next is tr.Next, but an io.EOF without the end-of-archive marker is an error.
func (e *endReader) next(tr *tar.Reader) (*tar.Header, error) {
	before := e.n
	h, err := tr.Next()
	if err != io.EOF {
		return h, err
	}
	if e.n-before < int64(len(e.tail)) || e.fill < len(e.tail) || !allZero(e.tail[:]) {
		return nil, errors.New("the archive is truncated: it ends without the end-of-archive marker")
	}
	return nil, io.EOF
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Check reads the whole tar stream and checks every entry name and that it is complete.
func (s *Source) Check(ctx context.Context, r io.Reader) error {
	er := &endReader{r: r}
	tr := tar.NewReader(er)
	for {
		h, err := er.next(tr)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("tar: %w", err)
		}
		if _, err := safeName(h.Name); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeLink {
			if _, err := safeName(h.Linkname); err != nil {
				return fmt.Errorf("hard link %q: %w", h.Name, err)
			}
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return fmt.Errorf("tar: %s: %w", h.Name, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// Restore extracts the tar stream into dir/<source name>. All file operations go through an
// os.Root, so neither a crafted name nor a symlink in the archive can write outside it. An
// existing non-empty target is refused unless opt.Force; without Force no file is replaced.
func (s *Source) Restore(ctx context.Context, r io.Reader, dir string, opt core.RestoreOptions) error {
	target := filepath.Join(dir, s.name)
	if entries, err := os.ReadDir(target); err == nil && len(entries) > 0 && !opt.Force {
		return fmt.Errorf("restore %q: %s exists and is not empty; choose another --to or pass --force to overwrite", s.name, target)
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("restore %q: %w", s.name, err)
	}
	return Extract(ctx, r, target, opt.Force)
}

type dirTime struct {
	name string
	mt   time.Time
}

// hardLink is a name to create, once every file is written, as another name of target.
type hardLink struct{ name, target string }

// Extract writes a tar stream below target.
func Extract(ctx context.Context, r io.Reader, target string, force bool) error {
	root, err := os.OpenRoot(target)
	if err != nil {
		return fmt.Errorf("extract: %w", err)
	}
	defer root.Close()
	er := &endReader{r: r}
	tr := tar.NewReader(er)
	buf := make([]byte, 1<<20)
	var dirs []dirTime
	var links []hardLink
	// Folders known to exist, so each file does not cost a MkdirAll (one openat per path
	// element). Safety does not depend on it: every operation still goes through root.
	made := map[string]bool{}
	owners := os.Geteuid() == 0 // like tar, only root restores numeric owners
	// Files are created through a root opened on their folder, kept while the archive stays
	// in that folder: opening "a/b/c" through root alone walks every path element (an
	// openat and a close each), for every file.
	folder := &folderRoot{root: root}
	defer folder.close()
	var fw *fileWriters
	if !force { // --force replaces what is there, one entry after another
		fw = newFileWriters(owners)
		defer fw.wait()
	}
	for {
		if fw != nil && fw.failed.Load() {
			break
		}
		h, err := er.next(tr)
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("extract: tar: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		name, err := safeName(h.Name)
		if err != nil {
			return fmt.Errorf("extract: %w", err)
		}
		if name == "." {
			continue
		}
		folder.forget(name) // this entry may replace the folder (--force)
		if dir := path.Dir(name); dir != "." && !made[dir] {
			if err := root.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("extract %s: %w", name, err)
			}
			made[dir] = true
		}
		delete(made, name) // a file or link may replace a folder of that name (--force)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.Mkdir(name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("extract %s: %w", name, err)
			}
			made[name] = true
			if owners {
				if err := root.Lchown(name, h.Uid, h.Gid); err != nil {
					return fmt.Errorf("extract %s: %w", name, err)
				}
			}
			if err := root.Chmod(name, fs.FileMode(h.Mode).Perm()|tarSpecial(h.Mode)); err != nil {
				return fmt.Errorf("extract %s: %w", name, err)
			}
			dirs = append(dirs, dirTime{name, h.ModTime})
		case tar.TypeReg:
			dir, err := folder.open(path.Dir(name))
			if err != nil {
				return fmt.Errorf("extract %s: %w", name, err)
			}
			if fw != nil && h.Size <= prefetchMax {
				if err := fw.submit(tr, dir, name, h); err != nil {
					return fmt.Errorf("extract %s: %w", name, err)
				}
				continue
			}
			if err := writeFile(dir.fd, h, path.Base(name), tr, force, owners, buf); err != nil {
				return fmt.Errorf("extract %s: %w", name, err)
			}
			if force {
				if err := removeStaleSidecars(root, name); err != nil {
					return fmt.Errorf("extract %s: %w", name, err)
				}
			}
		case tar.TypeSymlink:
			if force {
				_ = root.Remove(name)
			}
			if err := root.Symlink(h.Linkname, name); err != nil {
				if errors.Is(err, fs.ErrExist) {
					return fmt.Errorf("extract %s: already exists; pass --force to overwrite", name)
				}
				return fmt.Errorf("extract %s: %w", name, err)
			}
			// Only when the root resolves the link's folder inside itself, so a symlinked
			// parent cannot redirect the time change outside the target.
			if info, err := root.Lstat(name); err == nil && info.Mode()&fs.ModeSymlink != 0 {
				if owners {
					_ = root.Lchown(name, h.Uid, h.Gid)
				}
				_ = lchtimes(filepath.Join(root.Name(), name), h.ModTime)
			}
		case tar.TypeLink:
			// Made after the files: its target may still be queued for a file writer.
			target, err := safeName(h.Linkname)
			if err != nil {
				return fmt.Errorf("extract %s: hard link: %w", name, err)
			}
			links = append(links, hardLink{name, target})
		default:
			return fmt.Errorf("extract %s: unsupported tar entry type %q", name, h.Typeflag)
		}
	}
	if fw != nil {
		if err := fw.wait(); err != nil {
			return err
		}
	}
	for _, l := range links {
		if force {
			_ = root.Remove(l.name)
		}
		if err := root.Link(l.target, l.name); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("extract %s: already exists; pass --force to overwrite", l.name)
			}
			return fmt.Errorf("extract %s: hard link to %s: %w", l.name, l.target, err)
		}
	}
	// Directory mtimes last, deepest first, since writing inside a folder changes its mtime.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := root.Chtimes(dirs[i].name, dirs[i].mt, dirs[i].mt); err != nil {
			return fmt.Errorf("extract %s: %w", dirs[i].name, err)
		}
	}
	return nil
}

// folderRoot holds the folder the last file was written to, open through the target's
// root, so it is inside the target; files are created relative to its descriptor.
type folderRoot struct {
	root *os.Root // the target
	dir  string   // the folder cur is open on; "" when none
	cur  *heldDir
}

// heldDir is an open folder that files are created in. The folderRoot holds one reference
// while it is the current folder, and each file still waiting to be created in it holds
// one; the last to let go closes it, so a descriptor is never closed, and its number
// reused, under a file that is yet to be created.
type heldDir struct {
	f    *os.File
	fd   int
	refs atomic.Int32
}

func (d *heldDir) release() {
	if d.refs.Add(-1) == 0 {
		d.f.Close()
	}
}

func (f *folderRoot) open(dir string) (*heldDir, error) {
	if f.cur == nil || f.dir != dir {
		f.close()
		d, err := f.root.Open(dir)
		if err != nil {
			return nil, err
		}
		f.cur, f.dir = &heldDir{f: d, fd: int(d.Fd())}, dir
		f.cur.refs.Store(1)
	}
	return f.cur, nil
}

// forget lets go of the held folder if name is that folder or one of its parents.
func (f *folderRoot) forget(name string) {
	if f.cur != nil && (f.dir == name || strings.HasPrefix(f.dir, name+"/")) {
		f.close()
	}
}

func (f *folderRoot) close() {
	if f.cur != nil {
		f.cur.release()
		f.cur, f.dir = nil, ""
	}
}

// fileWriters creates small files on a few goroutines while the archive is read on.
// A small file costs six system calls (openat, write, fchown, fchmod, futimens, close) and
// few bytes, and made one after another, as tar -x makes them, they were the whole
// critical path of a restore of many small files: the other core, which decrypts and
// decompresses, waited. The reading goroutine still creates every folder (before the
// files in it), symlink and large file itself, in archive order, and folder mtimes are
// set only after every file is written.
//
// Parallel creation pays only while the file system creates files quickly. Where each
// create is slow in the kernel, several creators make it slower still: on ext4 without a
// journal, after many files are deleted (a restore over a tree just removed), every create
// scans the block group's inodes freed less than vm.dirty_expire_centisecs ago (30 s
// here); tar -x restored 61,440 files in 28-50 s then (0.5-0.8 ms a file), against 5.7-6.3 s
// when started 35-40 s after the delete. Four writers scanning at once took a median
// 48.2 s, with 76-85 s of system time, against 43.6 s and 28-44 s for tar -x (perf:
// recently_deleted in ext4_create). So the writers time each file, and while most take
// longer than slowCreate they take turns (one at a time), until creates are fast again.
type fileWriters struct {
	jobs   chan fileJob
	bufs   buffers
	owners bool
	wg     sync.WaitGroup
	failed atomic.Bool // err is set
	mu     sync.Mutex
	err    error
	closed sync.Once

	slow   atomic.Int32 // +1 for each slow file, -1 for each fast one, within [0, slowMax]
	serial atomic.Bool  // files are created one at a time, under turn
	turn   sync.Mutex
}

type fileJob struct {
	dir  *heldDir
	name string // the entry's name, for errors
	h    *tar.Header
	data []byte
}

const fileWorkers = 4

// The writers take turns once slowSerial of the last files took longer than slowCreate
// each (net of fast ones), and work in parallel again when that falls to slowParallel.
// A whole restore of 61,440 small files takes 0.7 s on tmpfs and 1.4-2.4 s on ext4
// (11-40 us a file, all work included), far below slowCreate.
const (
	slowCreate   = 250 * time.Microsecond
	slowMax      = 64
	slowSerial   = 32
	slowParallel = 8
)

func newFileWriters(owners bool) *fileWriters {
	w := &fileWriters{jobs: make(chan fileJob, prefetchDepth), bufs: newBuffers(), owners: owners}
	for range fileWorkers {
		w.wg.Add(1)
		go w.run()
	}
	return w
}

// submit reads the entry's data from tr and queues the file for creation in dir.
func (w *fileWriters) submit(tr io.Reader, dir *heldDir, name string, h *tar.Header) error {
	data := w.bufs.get()[:h.Size]
	if _, err := io.ReadFull(tr, data); err != nil {
		w.bufs.put(data)
		return err
	}
	dir.refs.Add(1)
	w.jobs <- fileJob{dir: dir, name: name, h: h, data: data}
	return nil
}

func (w *fileWriters) run() {
	defer w.wg.Done()
	for j := range w.jobs {
		if !w.failed.Load() {
			if err := w.write(j); err != nil {
				w.mu.Lock()
				if w.err == nil {
					w.err = fmt.Errorf("extract %s: %w", j.name, err)
					w.failed.Store(true)
				}
				w.mu.Unlock()
			}
		}
		j.dir.release()
		w.bufs.put(j.data)
	}
}

// write creates j's file, alone while creation is slow, and counts how long it took.
func (w *fileWriters) write(j fileJob) error {
	if w.serial.Load() {
		w.turn.Lock()
		defer w.turn.Unlock()
	}
	start := time.Now()
	err := writeFile(j.dir.fd, j.h, path.Base(j.name), bytes.NewReader(j.data), false, w.owners, nil)
	w.observe(time.Since(start))
	return err
}

// observe scores one file's creation time and switches between parallel and serial.
func (w *fileWriters) observe(d time.Duration) {
	var n int32
	if d > slowCreate {
		if n = w.slow.Add(1); n > slowMax {
			w.slow.Add(-1)
		}
	} else if n = w.slow.Add(-1); n < 0 {
		w.slow.Add(1)
	}
	switch {
	case n >= slowSerial:
		w.serial.Store(true)
	case n <= slowParallel:
		w.serial.Store(false)
	}
}

// wait lets the queued files be created and returns the first error; it may be called
// more than once.
func (w *fileWriters) wait() error {
	w.closed.Do(func() {
		close(w.jobs)
		w.wg.Wait()
	})
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func tarSpecial(m int64) fs.FileMode {
	var out fs.FileMode
	if m&0o4000 != 0 {
		out |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		out |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		out |= fs.ModeSticky
	}
	return out
}

// writeFile writes one regular file into the folder dirfd and sets its owner (when
// owners), mode and mtime through the new descriptor, without resolving its path again.
// The bare descriptor spares each of thousands of small files the four fcntl and the
// epoll_ctl that an *os.File costs. name is one path element; O_NOFOLLOW refuses a
// symlink put in its place.
func writeFile(dirfd int, h *tar.Header, name string, r io.Reader, force, owners bool, buf []byte) error {
	flags := unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
	if force {
		var st unix.Stat_t
		if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT != unix.S_IFREG {
			rm := 0
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				rm = unix.AT_REMOVEDIR
			}
			if err := unix.Unlinkat(dirfd, name, rm); err != nil {
				return fmt.Errorf("remove: %w", err)
			}
		}
		flags = flags&^unix.O_EXCL | unix.O_TRUNC
	}
	fd, err := retryEINTR(func() (int, error) { return unix.Openat(dirfd, name, flags, 0o600) })
	if err != nil {
		if err == unix.EEXIST {
			return errors.New("already exists; pass --force to overwrite")
		}
		return fmt.Errorf("create: %w", err)
	}
	if err := fillFile(fd, h, r, owners, buf); err != nil {
		unix.Close(fd)
		return err
	}
	if err := unix.Close(fd); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}

// fillFile copies the entry's contents into fd, then sets owner, mode and mtime.
func fillFile(fd int, h *tar.Header, r io.Reader, owners bool, buf []byte) error {
	if _, err := io.CopyBuffer(fdWriter(fd), r, buf); err != nil {
		return err
	}
	if owners {
		if err := unix.Fchown(fd, h.Uid, h.Gid); err != nil { // before chmod: chown clears setuid/setgid
			return fmt.Errorf("chown: %w", err)
		}
	}
	// tar's mode bits are chmod(2)'s: permissions, setuid 04000, setgid 02000, sticky 01000.
	if err := unix.Fchmod(fd, uint32(h.Mode&0o7777)); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	if err := futimens(fd, h.ModTime); err != nil {
		return fmt.Errorf("set mtime: %w", err)
	}
	return nil
}

// fdWriter writes to a bare descriptor, all of p or an error.
type fdWriter int

func (w fdWriter) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k, err := retryEINTR(func() (int, error) { return unix.Write(int(w), p[n:]) })
		if err != nil {
			return n, fmt.Errorf("write: %w", err)
		}
		n += k
	}
	return n, nil
}
