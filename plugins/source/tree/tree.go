// Package tree is the directory-tree source: a deterministic tar stream of a folder.
// An unchanged tree gives identical bytes on the next run (sorted walk, no atime or ctime,
// numeric owners only), which restic's deduplication depends on.
package tree

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nightjar-backup/nightjar/core"
	"github.com/nightjar-backup/nightjar/plugins/internal/ctxio"
	"github.com/nightjar-backup/nightjar/plugins/internal/sqlitecopy"
)

// Register adds the tree source to r.
func Register(r *core.Registry) {
	r.AddSource(core.SourcePlugin{
		Type: "tree",
		Doc:  "A tar stream (POSIX ustar, with PAX records where a name or value needs them) of a directory tree: regular files, directories (empty ones too), symlinks (as links), hard links (a file with several names in the tree is stored once, its other names as links to the first), modes, mtimes and numeric owners. Stored as <name>.tar.",
		Fields: []core.Field{
			{Name: "path", Kind: core.KindPath, Required: true, Doc: "The folder to back up.", Example: "/data"},
			{Name: "exclude", Kind: core.KindStrings, Doc: "Glob patterns (path.Match) matched against each entry's path relative to `path` and against its base name; a matching folder is skipped whole.", Example: `["*.tmp", "cache/"]`},
			{Name: "sqlite", Kind: core.KindString, Default: SQLiteSnapshot, Enum: []string{SQLiteSnapshot, SQLiteCopy, SQLiteRaw, SQLiteSkip},
				Doc: "Live SQLite databases in the tree (found by their header): snapshot stores a consistent copy of each, one committed state (WAL databases read straight into the archive under a read transaction; others copied in scratch_dir first), and leaves their -wal, -shm and -journal files out; copy is snapshot with every database copied in scratch_dir first, so its read transaction (past which a WAL cannot be checkpointed) lasts for the local copy alone, not for as long as the sinks take to store it; raw stores them as read (may be torn while written); skip leaves them and their sidecar files out."},
			{Name: "sqlite_integrity", Kind: core.KindString, Default: string(sqlitecopy.LevelOff), Enum: []string{"full", "quick", "off"},
				Doc: "With sqlite: snapshot or copy, a check of each database's stored state: full is PRAGMA integrity_check, quick is PRAGMA quick_check. It reads the database a second time, through SQLite (a quick check of an 827 MiB database added about a third to a tree backup's time on 2 cores). A database that fails it is still stored, page for page, and named in the log and the manifest (sqlite_stored_raw). The sqlite source checks its copy in full by default."},
			{Name: "subsecond_mtimes", Kind: core.KindBool, Default: false,
				Doc: "Keep mtimes to the nanosecond. Each entry then needs a PAX record: 1 KiB more per file before compression, which costs time with many small files. Off, mtimes are stored in whole seconds (cut, not rounded), as GNU tar stores them."},
		},
		New: func(c *core.Component, env core.Env) (core.Source, error) {
			s, err := New(c.Name, c.String("path"), c.Strings("exclude"), env.Logger)
			if err != nil {
				return nil, err
			}
			s.subsecond = c.Bool("subsecond_mtimes")
			return s.WithIntegrity(sqlitecopy.Level(c.String("sqlite_integrity"))).WithSQLite(c.String("sqlite"), env.ScratchDir)
		},
	})
}

// Source archives one folder.
type Source struct {
	name    string
	root    string
	exclude []string
	log     *slog.Logger
	sqlite  string           // SQLiteSnapshot, SQLiteCopy, SQLiteRaw or SQLiteSkip
	scratch string           // where database copies are made
	check   sqlitecopy.Level // of each database stored with SQLiteSnapshot or SQLiteCopy
	// subsecond keeps nanosecond mtimes (a PAX record for every entry); off, whole seconds.
	subsecond bool
}

// New returns a tree source; patterns are checked here so a bad glob is a config error.
func New(name, root string, exclude []string, log *slog.Logger) (*Source, error) {
	for _, p := range exclude {
		if _, err := path.Match(strings.TrimSuffix(p, "/"), ""); err != nil {
			return nil, fmt.Errorf("invalid exclude pattern %q: %w", p, err)
		}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Source{name: name, root: root, exclude: exclude, log: log, sqlite: SQLiteSnapshot, scratch: os.TempDir(), check: sqlitecopy.LevelOff}, nil
}

func (s *Source) Describe() core.ArtifactSpec {
	return core.ArtifactSpec{Name: s.name, Kind: "tree", Filename: s.name + ".tar"}
}

// excluded reports whether rel (slash-separated, relative to root) matches an exclude.
func (s *Source) excluded(rel string, isDir bool) bool {
	base := path.Base(rel)
	for _, p := range s.exclude {
		dirOnly := strings.HasSuffix(p, "/")
		p = strings.TrimSuffix(p, "/")
		if dirOnly && !isDir {
			continue
		}
		if ok, _ := path.Match(p, rel); ok {
			return true
		}
		if ok, _ := path.Match(p, base); ok {
			return true
		}
	}
	return false
}

// stats is one snapshot's state: the counts the manifest records, and dbCopy.
type stats struct {
	files, dirs, symlinks, hardlinks, skipped, changed int64
	bytes                                              int64
	changedNames                                       []string
	sqlite                                             sqliteStats
	// linked holds the files with more than one name (hard links) stored with their data,
	// until their other names, which become links to the first, have been met.
	linked links
	// dbCopy is held while a database inside the tree is copied, and by the read-ahead
	// around each file it opens and closes, so the read-ahead never closes a descriptor of
	// that database (another name of it: a hard link) while the copy holds SQLite's POSIX
	// locks, which closing any descriptor of the file would drop.
	dbCopy sync.RWMutex
}

// fileID is what makes a file one file whatever its names: its device and inode.
type fileID struct{ dev, ino uint64 }

// multiLinked returns the identity and the link count of a regular file with more than
// one name.
func multiLinked(info fs.FileInfo) (fileID, uint64, bool) {
	sys, ok := info.Sys().(*syscall.Stat_t)
	if !ok || !info.Mode().IsRegular() || sys.Nlink < 2 {
		return fileID{}, 0, false
	}
	return fileID{dev: uint64(sys.Dev), ino: sys.Ino}, uint64(sys.Nlink), true
}

// links maps files with several names to the name their data is stored under. An entry
// goes once all of its file's names have been met, so memory holds only the files whose
// other names are still to come, not every linked file of the tree.
type links map[fileID]linked

type linked struct {
	name string
	left uint64 // names still to come
}

func (l links) add(id fileID, nlink uint64, name string) {
	l[id] = linked{name: name, left: nlink - 1}
}

// next returns the name id's data is stored under, if it was stored, and counts one more
// of its names as met.
func (l links) next(id fileID) (string, bool) {
	e, ok := l[id]
	if !ok {
		return "", false
	}
	if e.left--; e.left == 0 {
		delete(l, id)
	} else {
		l[id] = e
	}
	return e.name, true
}

// entry is one item of the sorted walk.
type entry struct {
	rel  string // slash-separated, relative to root; "" is the root itself
	abs  string
	info fs.FileInfo // nil for a regular file of a walk without statFiles (see walk)
}

// walk calls fn for every entry in sorted order, skipping excludes. An unreadable folder
// fails the walk with an error naming it. Without statFiles, an entry the folder listing
// names a regular file comes without info: the backup reads ahead every such file and
// takes its header from the fstat of the open file, so an lstat of each of them in the
// walk (61,440 for a tree of small files) would be a system call for nothing.
func (s *Source) walk(ctx context.Context, statFiles bool, fn func(e entry) error) error {
	root := filepath.Clean(s.root)
	info, err := os.Lstat(root)
	if err != nil {
		return fmt.Errorf("%w", err)
	}
	if !info.IsDir() {
		return fmt.Errorf("%s is not a directory", s.root)
	}
	prefix := len(join(root, "")) // an entry's path relative to the root follows it
	return s.walkDir(ctx, root, prefix, statFiles, fn)
}

// join returns the path of name in folder dir: filepath.Join without its Clean, for the
// names of a listing.
func join(dir, name string) string {
	if strings.HasSuffix(dir, string(filepath.Separator)) {
		return dir + name // the root is "/"
	}
	return dir + string(filepath.Separator) + name
}

// dirent is one name of a folder listing. A folder's listing is held while its entries are
// archived, so it is kept small: a name and a type, against the 72 bytes and more of an
// fs.DirEntry (a folder of 400,000 files, measured: 14 MB of heap instead of 36).
type dirent struct {
	name string
	typ  fs.FileMode
}

// direntBatch is how many names one read of a folder returns.
const direntBatch = 1024

// list returns the names in folder dir, sorted byte-wise (as os.ReadDir sorts them, so
// an unchanged tree keeps giving the same bytes).
func list(dir string) ([]dirent, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var names []dirent
	for {
		batch, err := f.ReadDir(direntBatch)
		for _, d := range batch {
			names = append(names, dirent{name: d.Name(), typ: d.Type()})
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	slices.SortFunc(names, func(a, b dirent) int { return strings.Compare(a.name, b.name) })
	return names, nil
}

// walkDir walks the folder dir; each entry's path relative to the root is its path from
// byte prefix on (a part of the same string: one allocation an entry).
func (s *Source) walkDir(ctx context.Context, dir string, prefix int, statFiles bool, fn func(e entry) error) error {
	names, err := list(dir)
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", dir, unwrapPathErr(err))
	}
	for _, d := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		abs := join(dir, d.name)
		e := entry{rel: filepath.ToSlash(abs[prefix:]), abs: abs}
		isDir := d.typ.IsDir()
		if s.excluded(e.rel, isDir) {
			continue
		}
		if statFiles || !d.typ.IsRegular() {
			info, err := os.Lstat(e.abs)
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted since the folder was read
			}
			if err != nil {
				return fmt.Errorf("stat %s: %w", e.abs, err)
			}
			e.info = info
			isDir = info.IsDir()
		}
		if err := fn(e); err != nil {
			return err
		}
		if isDir {
			if err := s.walkDir(ctx, e.abs, prefix, statFiles, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

func unwrapPathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// EstimateSize walks the tree and adds up what the tar stream will hold.
func (s *Source) EstimateSize(ctx context.Context) int64 {
	var n int64 = 1024 // end-of-archive blocks
	seen := links{}
	err := s.walk(ctx, true, func(e entry) error {
		n += 512 // header
		if s.subsecond {
			n += 1024 // a PAX header and its records
		}
		if id, nlink, ok := multiLinked(e.info); ok {
			if _, ok := seen.next(id); ok {
				return nil // stored once: its other names are links
			}
			seen.add(id, nlink, "")
		}
		if e.info.Mode().IsRegular() {
			n += (e.info.Size() + 511) &^ 511
		}
		return nil
	})
	if err != nil {
		return -1
	}
	return n
}

// Snapshot writes the tar stream to w.
func (s *Source) Snapshot(ctx context.Context, w io.Writer) (map[string]string, error) {
	tw := newTarWriter(w)
	st := stats{linked: links{}}
	buf := make([]byte, 1<<20)
	err := s.walkPrefetched(ctx, &st.dbCopy, func(e entry, pf *prefetched) error { return s.writeEntry(ctx, tw, e, pf, &st, buf) })
	if err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("finish tar: %w", err)
	}
	meta := map[string]string{
		"files":    strconv.FormatInt(st.files, 10),
		"dirs":     strconv.FormatInt(st.dirs, 10),
		"symlinks": strconv.FormatInt(st.symlinks, 10),
		"bytes":    strconv.FormatInt(st.bytes, 10),
		"path":     s.root,
	}
	if st.hardlinks > 0 {
		meta["hardlinks"] = strconv.FormatInt(st.hardlinks, 10)
	}
	if st.skipped > 0 {
		meta["skipped_special"] = strconv.FormatInt(st.skipped, 10)
	}
	if st.changed > 0 {
		meta["changed_while_read"] = strconv.FormatInt(st.changed, 10)
		names := st.changedNames
		if len(names) > 20 {
			names = append(names[:20:20], fmt.Sprintf("... and %d more", len(st.changedNames)-20))
		}
		meta["changed_files"] = strings.Join(names, "\n")
	}
	st.sqlite.addMeta(meta, s.sqlite, s.check)
	return meta, nil
}

func header(e entry) (*tar.Header, error) {
	mode := e.info.Mode()
	h := &tar.Header{
		Name:    e.rel,
		Mode:    int64(mode.Perm()),
		ModTime: e.info.ModTime(),
	}
	if mode&fs.ModeSetuid != 0 {
		h.Mode |= 0o4000
	}
	if mode&fs.ModeSetgid != 0 {
		h.Mode |= 0o2000
	}
	if mode&fs.ModeSticky != 0 {
		h.Mode |= 0o1000
	}
	if sys, ok := e.info.Sys().(*syscall.Stat_t); ok {
		h.Uid, h.Gid = int(sys.Uid), int(sys.Gid)
	}
	switch {
	case mode.IsRegular():
		h.Typeflag = tar.TypeReg
		h.Size = e.info.Size()
	case mode.IsDir():
		h.Typeflag = tar.TypeDir
		h.Name += "/"
	case mode&fs.ModeSymlink != 0:
		target, err := os.Readlink(e.abs)
		if err != nil {
			return nil, err
		}
		h.Typeflag = tar.TypeSymlink
		h.Linkname = target
	default:
		return nil, nil // devices, sockets, pipes: not backed up
	}
	return h, nil
}

// writeHeader writes h for the entry rel. With whole-second mtimes it writes a copy
// with the mtime cut to the second, so h keeps the exact time the change checks compare
// against; the writer then picks ustar, and PAX records only for what ustar cannot hold.
func (s *Source) writeHeader(tw *tarWriter, h *tar.Header, rel string) error {
	if s.subsecond {
		h.Format = tar.FormatPAX
	} else if h.ModTime.Nanosecond() != 0 {
		c := *h
		c.ModTime = c.ModTime.Truncate(time.Second)
		h = &c
	}
	if err := tw.WriteHeader(h); err != nil {
		return fmt.Errorf("write %s: %w", rel, err)
	}
	return nil
}

func (s *Source) writeEntry(ctx context.Context, tw *tarWriter, e entry, pf *prefetched, st *stats, buf []byte) error {
	switch {
	case e.info != nil:
	case pf != nil && pf.info != nil: // read ahead: the header is the open file's fstat
		e.info = pf.info
	default: // not read ahead, or not (or no longer) a small regular file
		info, err := os.Lstat(e.abs)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted since the folder was read: not part of this snapshot
		}
		if err != nil {
			return fmt.Errorf("stat %s: %w", e.abs, err)
		}
		e.info, pf = info, nil
	}
	h, err := header(e)
	if err != nil {
		return fmt.Errorf("%s: %w", e.abs, err)
	}
	if h == nil {
		st.skipped++
		s.log.Warn("skipping special file", "source", s.name, "path", e.abs, "mode", e.info.Mode().String())
		return nil
	}
	if h.Typeflag != tar.TypeReg {
		if err := s.writeHeader(tw, h, e.rel); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeDir {
			st.dirs++
		} else {
			st.symlinks++
		}
		return nil
	}
	if pf != nil && !pf.fallback && !s.needsStreaming(e, pf) {
		if done, err := s.writeLink(tw, h, e, st); done || err != nil {
			return err
		}
		return s.writePrefetched(tw, h, e, pf, st, buf)
	}
	f, err := os.Open(e.abs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // deleted since the folder was read: not part of this snapshot
	}
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", e.abs, unwrapPathErr(err))
	}
	defer f.Close()
	// Take size and mtime from the open file, so the header matches what we read.
	if info, err := f.Stat(); err == nil && info.Mode().IsRegular() {
		e.info = info
		h.Size, h.ModTime = info.Size(), info.ModTime()
	}
	if handled, err := s.sqliteEntry(ctx, tw, f, e, h, st, buf); handled || err != nil {
		return err
	}
	if done, err := s.writeLink(tw, h, e, st); done || err != nil {
		return err
	}
	if err := s.writeHeader(tw, h, e.rel); err != nil {
		return err
	}
	n, err := io.CopyBuffer(tw, io.LimitReader(ctxio.Reader(ctx, f), h.Size), buf)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("cannot read %s: %w", e.abs, unwrapPathErr(err))
	}
	changed := false
	if n < h.Size { // shrank while read: pad so the archive stays valid, and report it
		if err := zeroFill(tw, h.Size-n, buf); err != nil {
			return fmt.Errorf("write %s: %w", e.rel, err)
		}
		changed = true
	}
	if after, err := f.Stat(); err == nil && (after.Size() != h.Size || !after.ModTime().Equal(h.ModTime)) {
		changed = true
	}
	s.fileDone(st, e, h, changed)
	return nil
}

// writeLink stores the regular file e as a hard link to the name its data was stored
// under, if another of its names came first, and reports whether it did. A database the
// SQLite handling copied or skipped is never a link target: each of its names is handled
// on its own, as before.
func (s *Source) writeLink(tw *tarWriter, h *tar.Header, e entry, st *stats) (bool, error) {
	id, _, ok := multiLinked(e.info)
	if !ok {
		return false, nil
	}
	first, ok := st.linked.next(id)
	if !ok {
		return false, nil
	}
	l := *h
	l.Typeflag, l.Linkname, l.Size = tar.TypeLink, first, 0
	if err := s.writeHeader(tw, &l, e.rel); err != nil {
		return true, err
	}
	st.hardlinks++
	return true, nil
}

// fileDone counts a stored file and reports it if it changed while read.
func (s *Source) fileDone(st *stats, e entry, h *tar.Header, changed bool) {
	if id, nlink, ok := multiLinked(e.info); ok && st.linked != nil {
		st.linked.add(id, nlink, e.rel) // the name later names of this file link to
	}
	if changed {
		st.changed++
		st.changedNames = append(st.changedNames, e.rel)
		s.log.Warn("file changed while it was read; its copy in this snapshot may be inconsistent",
			"source", s.name, "path", e.abs)
	}
	st.files++
	st.bytes += h.Size
}

func zeroFill(w io.Writer, n int64, buf []byte) error {
	clear(buf)
	for n > 0 {
		k := min(n, int64(len(buf)))
		if _, err := w.Write(buf[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}
