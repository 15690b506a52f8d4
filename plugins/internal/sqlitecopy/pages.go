package sqlitecopy

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// The page copy: while conn holds a read transaction on the source, nightjar copies the
// database file itself, and in WAL mode lays the WAL's committed frames over it, instead of
// having SQLite copy page by page through two pagers. The result is the same committed
// state the backup API would copy, for a fraction of the CPU: the file is copied by the
// kernel (copy_file_range) and only the WAL's frames pass through nightjar.
//
// Why it is consistent:
//   - Rollback-journal mode: the read transaction holds a SHARED lock, and no writer can
//     change the database file until it is released.
//   - WAL mode: the read transaction holds a read lock in the -shm file, of one of two kinds.
//     If it reads the WAL up to a mark, then until it ends SQLite's checkpoints copy into
//     the database file only frames at or below that mark (each page's newest such frame),
//     and the WAL is not restarted, so its frames are not overwritten. If the WAL was all
//     in the file when it began, it reads the file alone, and no checkpoint copies anything
//     into the file until it ends; a writer may restart the WAL once, but the frames it then
//     commits are never checkpointed, so the WAL is not restarted again.
//     A page of the file may therefore change while it is read, but only to a version that
//     a frame laid over it afterwards replaces. The frames laid over are those of the
//     committed state the -shm header names after the transaction began: its own state or
//     a later one, whose frames are just as safe. When the header says that every frame
//     of that state is in the file already (nBackfill), none is read.
//
// Anything unexpected (no -shm file, one nightjar could not lock, a torn or unknown header,
// a frame whose checksum does not chain) makes copyPages return errUsePager, and the caller
// falls back to the backup API, which handles every case SQLite does.

// errUsePager says the page copy cannot vouch for this database; the backup API can.
var errUsePager = errors.New("page copy not possible")

const (
	walHeaderSize   = 32
	walFrameHeader  = 24
	walMagicLE      = 0x377f0682 // checksums over little-endian words
	walMagicBE      = 0x377f0683 // checksums over big-endian words
	walVersion      = 3007000
	shmHeaderSize   = 48 // one copy of the WAL-index header; the -shm file starts with two
	shmHeaderTries  = 100
	legacyFormat    = 1 // bytes 18 and 19 of the database header: rollback journal
	walFormat       = 2 // WAL
	copyBufferBytes = 1 << 20
)

// keptFiles holds the source's files that the page copy opened, until the SQLite
// connection that read them is closed. Closing any descriptor of a file drops every POSIX
// record lock this process holds on it, SQLite's included: its read mark in the -shm file,
// its SHARED lock on the database. Closed while the transaction runs, the copy is no longer
// protected from checkpoints (TestPageCopyUnderLoad found it so); closed
// before the connection, a later read on it (the backup API's) would not be either. So no
// other SQLite connection of this process may have the source open during a copy; in
// nightjar sources run one at a time.
type keptFiles struct{ files []*os.File }

func (k *keptFiles) open(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err == nil {
		k.files = append(k.files, f)
	}
	return f, err
}

// closeAll closes the files; call it after the connection is closed.
func (k *keptFiles) closeAll() {
	for _, f := range k.files {
		f.Close()
	}
	k.files = nil
}

// walIndexHeader is the part of the -shm file's header the copy needs.
type walIndexHeader struct {
	pageSize   int64
	mxFrame    uint32 // the last frame of the committed state
	nPage      uint32 // the database's size in pages in that state; 0 if the WAL has none
	frameCksum [2]uint32
	salt       [8]byte          // as stored in the WAL header
	order      binary.ByteOrder // of the words the WAL's checksums add up
	walCksum   [2]uint32        // the WAL header's checksum, where the frames' chain starts
}

// pagePlan is one committed state of a database as the page copy writes it: the database
// file's first fileBytes, zeros up to size, and over them the WAL's frames (the newest frame
// of each page in that state). Made under a read transaction, it holds until that ends.
type pagePlan struct {
	db        *os.File
	wal       *os.File // nil when no frame is laid over
	pageSize  int64
	fileBytes int64
	size      int64
	frames    []walFrame // by page number
	salt      [8]byte    // of the WAL the frames belong to
}

// walFrame is where the newest frame of a page is in the WAL.
type walFrame struct {
	pgno uint32
	off  int64 // of the frame's header
}

// beginRead starts a read transaction on conn: a deferred transaction takes its read lock
// at its first read. End it with ROLLBACK.
func beginRead(ctx context.Context, conn *sql.Conn) error {
	if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
		return err
	}
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(new(int64)); err != nil {
		conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		return err
	}
	return nil
}

// planPages plans the page copy of the database at src, under the read transaction conn
// holds. It returns errUsePager (wrapped) when it cannot vouch for the copy. The source's
// files it opens are left open in kept: see keptFiles.
func planPages(ctx context.Context, conn *sql.Conn, kept *keptFiles, src string) (*pagePlan, error) {
	var pageSize int64
	var journal string
	if err := conn.QueryRowContext(ctx, "PRAGMA page_size").Scan(&pageSize); err != nil {
		return nil, err
	}
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&journal); err != nil {
		return nil, err
	}
	db, err := kept.open(src)
	if err != nil {
		return nil, err
	}
	format, err := fileFormat(db)
	if err != nil {
		return nil, err
	}
	wal := journal == "wal"
	if wal != (format == walFormat) || format != walFormat && format != legacyFormat {
		return nil, fmt.Errorf("%w: journal mode %s with file format %d", errUsePager, journal, format)
	}
	st, err := db.Stat()
	if err != nil {
		return nil, err
	}
	p := &pagePlan{db: db, pageSize: pageSize, fileBytes: st.Size(), size: st.Size()}
	if !wal {
		return p, nil
	}
	hdr, walFile, err := openWAL(ctx, kept, src)
	if err != nil {
		return nil, err
	}
	if hdr.mxFrame > 0 && hdr.pageSize != pageSize {
		return nil, fmt.Errorf("%w: -shm page size %d, database %d", errUsePager, hdr.pageSize, pageSize)
	}
	if hdr.nPage > 0 {
		// The file may hold pages the committed state has dropped, or lack pages still only
		// in the WAL; the frames fill those in and the rest is cut off.
		p.size = int64(hdr.nPage) * pageSize
		p.fileBytes = min(p.fileBytes, p.size)
	}
	if walFile != nil {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if p.frames, err = indexWAL(walFile, hdr); err != nil {
			return nil, err
		}
		p.wal, p.salt = walFile, hdr.salt
	}
	return p, nil
}

// copyPages copies the database at src into the new file dst as of one committed state,
// under a read transaction on conn. It returns errUsePager (wrapped) when it cannot.
// The source's files it opens are left open in kept: see keptFiles.
func copyPages(ctx context.Context, conn *sql.Conn, kept *keptFiles, src, dst string) error {
	if err := beginRead(ctx, conn); err != nil {
		return err
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
	p, err := planPages(ctx, conn, kept, src)
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	// From one *os.File to another, io.CopyN copies with copy_file_range, in the kernel.
	if n, err := io.CopyN(out, p.db, p.fileBytes); err != nil {
		return fmt.Errorf("copy %s to %s: %d of %d bytes: %w", src, dst, n, p.fileBytes, err)
	}
	if len(p.frames) > 0 {
		page := make([]byte, p.pageSize)
		for _, f := range p.frames {
			if err := p.readFrame(f, page); err != nil {
				return err
			}
			if _, err := out.WriteAt(page, int64(f.pgno-1)*p.pageSize); err != nil {
				return fmt.Errorf("write page %d: %w", f.pgno, err)
			}
		}
	}
	if p.size != p.fileBytes {
		if err := out.Truncate(p.size); err != nil {
			return err
		}
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("write %s: %w", dst, err)
	}
	return ctx.Err()
}

// writeTo writes the planned copy to w, in order: the file read in large chunks, each with
// its pages' frames laid over before it is written.
func (p *pagePlan) writeTo(ctx context.Context, w io.Writer) (int64, error) {
	buf := make([]byte, max(copyBufferBytes, p.pageSize)) // page sizes are powers of 2
	frames := p.frames
	var off int64
	for off < p.size {
		if err := ctx.Err(); err != nil {
			return off, err
		}
		chunk := buf[:min(int64(len(buf)), p.size-off)]
		k := max(0, min(int64(len(chunk)), p.fileBytes-off))
		if k > 0 {
			if n, err := p.db.ReadAt(chunk[:k], off); err != nil {
				return off, fmt.Errorf("read %s: %d of %d bytes at %d: %w", p.db.Name(), n, k, off, err)
			}
		}
		clear(chunk[k:])
		for ; len(frames) > 0 && int64(frames[0].pgno-1)*p.pageSize < off+int64(len(chunk)); frames = frames[1:] {
			at := int64(frames[0].pgno-1)*p.pageSize - off
			if err := p.readFrame(frames[0], chunk[at:at+p.pageSize]); err != nil {
				return off, err
			}
		}
		n, err := w.Write(chunk)
		off += int64(n)
		if err != nil {
			return off, err
		}
	}
	return off, nil
}

// readFrame reads the page of frame f into page, after checking that the frame is still
// the one indexWAL checked (its page number and salt): frames of the planned state are not
// overwritten while the read transaction lasts, so a mismatch means that did not hold.
func (p *pagePlan) readFrame(f walFrame, page []byte) error {
	var h [walFrameHeader]byte
	if _, err := p.wal.ReadAt(h[:], f.off); err != nil {
		return fmt.Errorf("read %s at %d: %w", p.wal.Name(), f.off, err)
	}
	if binary.BigEndian.Uint32(h[0:]) != f.pgno || !bytes.Equal(h[8:16], p.salt[:]) {
		return fmt.Errorf("%s: the frame at %d changed while the database was read", p.wal.Name(), f.off)
	}
	if _, err := p.wal.ReadAt(page, f.off+walFrameHeader); err != nil {
		return fmt.Errorf("read %s at %d: %w", p.wal.Name(), f.off+walFrameHeader, err)
	}
	return nil
}

// fileFormat returns byte 18 of the database header (1 for rollback journal, 2 for WAL),
// after checking that bytes 18 and 19 agree.
func fileFormat(db *os.File) (byte, error) {
	var b [20]byte
	if _, err := db.ReadAt(b[:], 0); err != nil {
		return 0, fmt.Errorf("%w: database header: %v", errUsePager, err) // SQLite will say more
	}
	if b[18] != b[19] {
		return 0, fmt.Errorf("%w: read and write versions %d and %d", errUsePager, b[18], b[19])
	}
	return b[18], nil
}

// openWAL reads the WAL-index header from the -shm file and, when the committed state it
// describes has frames not yet copied into the database file, opens the WAL positioned at
// its first frame. SQLite writes the header's two copies one after the other, so a read that
// races a commit finds them different, or a checksum that does not match; and a writer that
// restarts the WAL rewrites the header just before the WAL's. Either is retried.
func openWAL(ctx context.Context, kept *keptFiles, src string) (walIndexHeader, *os.File, error) {
	shm := src + "-shm"
	// Only a -shm file SQLite could lock for this process means the read mark is held there;
	// without write access SQLite reads the WAL in a mode that takes no read mark.
	if err := unix.Access(shm, unix.R_OK|unix.W_OK); err != nil {
		return walIndexHeader{}, nil, fmt.Errorf("%w: %s: %v", errUsePager, shm, err)
	}
	f, err := kept.open(shm)
	if err != nil {
		return walIndexHeader{}, nil, fmt.Errorf("%w: %v", errUsePager, err)
	}
	var b [2*shmHeaderSize + 4]byte // the two header copies, then nBackfill
	var again [2 * shmHeaderSize]byte
	why := "no consistent header"
	for try := 0; try < shmHeaderTries; try++ {
		if try > 0 {
			if err := ctx.Err(); err != nil {
				return walIndexHeader{}, nil, err
			}
			time.Sleep(time.Duration(try) * 10 * time.Microsecond)
		}
		// The header, nBackfill after it, then the header again: a writer that restarts the
		// WAL writes the new header first and then sets nBackfill to 0, so an nBackfill read
		// between two equal headers belongs to them.
		if _, err := f.ReadAt(b[:], 0); err != nil {
			return walIndexHeader{}, nil, fmt.Errorf("%w: %s: %v", errUsePager, shm, err)
		}
		if _, err := f.ReadAt(again[:], 0); err != nil {
			return walIndexHeader{}, nil, fmt.Errorf("%w: %s: %v", errUsePager, shm, err)
		}
		h, ok := parseShmHeader(b[:shmHeaderSize], b[shmHeaderSize:2*shmHeaderSize])
		if !ok || !bytes.Equal(again[:], b[:2*shmHeaderSize]) {
			continue
		}
		// Frames up to nBackfill are in the database file already. A checkpoint never goes
		// past the read mark, so when it has reached this state's last frame, the file is
		// this state and stays so until the transaction ends.
		if binary.NativeEndian.Uint32(b[2*shmHeaderSize:]) >= h.mxFrame {
			return h, nil, nil
		}
		w, err := openWALAt(kept, src+"-wal", &h)
		if err == nil {
			return h, w, nil
		}
		if !errors.Is(err, errUsePager) {
			return walIndexHeader{}, nil, err
		}
		why = err.Error()
	}
	return walIndexHeader{}, nil, fmt.Errorf("%w: %s: %s, %d tries", errUsePager, shm, why, shmHeaderTries)
}

// openWALAt opens the WAL at path, checks that its header is the one h names and records
// the header's checksum in h.
func openWALAt(kept *keptFiles, path string, h *walIndexHeader) (*os.File, error) {
	f, err := kept.open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUsePager, err)
	}
	var wh [walHeaderSize]byte
	if _, err := f.ReadAt(wh[:], 0); err != nil {
		return nil, fmt.Errorf("%w: %s header: %v", errUsePager, path, err)
	}
	be := binary.BigEndian
	magic := uint32(walMagicLE)
	if h.order == binary.BigEndian {
		magic = walMagicBE
	}
	ok := be.Uint32(wh[0:]) == magic && be.Uint32(wh[4:]) == walVersion && int64(be.Uint32(wh[8:])) == h.pageSize &&
		bytes.Equal(wh[16:24], h.salt[:])
	if ok {
		var sum [2]uint32
		walChecksum(h.order, wh[:24], &sum)
		h.walCksum = [2]uint32{be.Uint32(wh[24:]), be.Uint32(wh[28:])}
		ok = sum == h.walCksum
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s: its header is not the one the -shm header names", errUsePager, path)
	}
	return f, nil
}

// parseShmHeader decodes a WAL-index header (struct WalIndexHdr in SQLite's wal.c, in the
// machine's byte order) if both copies agree and its checksum holds.
func parseShmHeader(h1, h2 []byte) (walIndexHeader, bool) {
	ne := binary.NativeEndian
	if !bytes.Equal(h1, h2) || ne.Uint32(h1[0:]) != walVersion || h1[12] != 1 { // iVersion, isInit
		return walIndexHeader{}, false
	}
	var sum [2]uint32
	walChecksum(ne, h1[:40], &sum)
	if sum[0] != ne.Uint32(h1[40:]) || sum[1] != ne.Uint32(h1[44:]) {
		return walIndexHeader{}, false
	}
	sz := ne.Uint16(h1[14:]) // page sizes up to 32768 as they are; 65536 as 1
	h := walIndexHeader{
		pageSize:   int64(sz&0xfe00) | int64(sz&1)<<16,
		mxFrame:    ne.Uint32(h1[16:]),
		nPage:      ne.Uint32(h1[20:]),
		frameCksum: [2]uint32{ne.Uint32(h1[24:]), ne.Uint32(h1[28:])},
		order:      binary.LittleEndian,
	}
	if h1[13] != 0 { // bigEndCksum
		h.order = binary.BigEndian
	}
	copy(h.salt[:], h1[32:40])
	// A WAL that has no frames (since the last checkpoint reset it) has no page size yet.
	return h, h.mxFrame == 0 || h.pageSize >= 512
}

// walChecksum folds b (a multiple of 8 bytes) into sum as SQLite's walChecksumBytes does.
func walChecksum(order binary.ByteOrder, b []byte, sum *[2]uint32) {
	s1, s2 := sum[0], sum[1]
	for ; len(b) >= 8; b = b[8:] {
		s1 += order.Uint32(b) + s2
		s2 += order.Uint32(b[4:]) + s1
	}
	sum[0], sum[1] = s1, s2
}

// indexWAL reads frames 1 to hdr.mxFrame of the WAL f and returns where each page's newest
// frame is, by page number, after checking that each frame belongs to the header's WAL (its
// salt) and that their checksums chain from the WAL header to the checksum the -shm header
// records.
func indexWAL(f *os.File, hdr walIndexHeader) ([]walFrame, error) {
	path := f.Name()
	r := bufio.NewReaderSize(io.NewSectionReader(f, walHeaderSize, int64(hdr.mxFrame)*(walFrameHeader+hdr.pageSize)), copyBufferBytes)
	be, order := binary.BigEndian, hdr.order
	sum := hdr.walCksum
	frame := make([]byte, walFrameHeader+hdr.pageSize)
	newest := make(map[uint32]int64)
	var last uint32 // the database size the last frame read commits, 0 if not a commit
	for i := uint32(1); i <= hdr.mxFrame; i++ {
		if _, err := io.ReadFull(r, frame); err != nil {
			return nil, fmt.Errorf("%w: %s: frame %d of %d: %v", errUsePager, path, i, hdr.mxFrame, err)
		}
		walChecksum(order, frame[:8], &sum)
		walChecksum(order, frame[walFrameHeader:], &sum)
		pgno := be.Uint32(frame[0:])
		if pgno == 0 || !bytes.Equal(frame[8:16], hdr.salt[:]) ||
			sum != [2]uint32{be.Uint32(frame[16:]), be.Uint32(frame[20:])} {
			return nil, fmt.Errorf("%w: %s: frame %d does not belong to the committed state", errUsePager, path, i)
		}
		last = be.Uint32(frame[4:])
		newest[pgno] = walHeaderSize + int64(i-1)*int64(len(frame))
	}
	if sum != hdr.frameCksum || last != hdr.nPage {
		return nil, fmt.Errorf("%w: %s: frames end at checksum %x and size %d, the -shm header says %x and %d",
			errUsePager, path, sum, last, hdr.frameCksum, hdr.nPage)
	}
	frames := make([]walFrame, 0, len(newest))
	for pgno, off := range newest {
		// Pages past the committed size (the database shrank since) are cut off.
		if int64(pgno) <= int64(hdr.nPage) {
			frames = append(frames, walFrame{pgno, off})
		}
	}
	slices.SortFunc(frames, func(a, b walFrame) int { return cmp.Compare(a.pgno, b.pgno) })
	return frames, nil
}
