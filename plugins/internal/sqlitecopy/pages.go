package sqlitecopy

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
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

// copyPages copies the database at src into the new file dst as of one committed state,
// under a read transaction on conn. It returns errUsePager (wrapped) when it cannot.
// The source's files it opens are left open in kept: see keptFiles.
func copyPages(ctx context.Context, conn *sql.Conn, kept *keptFiles, src, dst string) error {
	if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
		return err
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
	// A deferred transaction takes its read lock at the first read.
	var pageSize int64
	var journal string
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(new(int64)); err != nil {
		return err
	}
	if err := conn.QueryRowContext(ctx, "PRAGMA page_size").Scan(&pageSize); err != nil {
		return err
	}
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&journal); err != nil {
		return err
	}

	db, err := kept.open(src)
	if err != nil {
		return err
	}
	format, err := fileFormat(db)
	if err != nil {
		return err
	}
	wal := journal == "wal"
	if wal != (format == walFormat) || format != walFormat && format != legacyFormat {
		return fmt.Errorf("%w: journal mode %s with file format %d", errUsePager, journal, format)
	}
	var hdr walIndexHeader
	var walFile *os.File
	if wal {
		if hdr, walFile, err = openWAL(ctx, kept, src); err != nil {
			return err
		}
		if hdr.mxFrame > 0 && hdr.pageSize != pageSize {
			return fmt.Errorf("%w: -shm page size %d, database %d", errUsePager, hdr.pageSize, pageSize)
		}
	}

	out, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	st, err := db.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	if wal && hdr.nPage > 0 {
		// The file may hold pages the committed state has dropped, or lack pages still only
		// in the WAL; the frames fill those in and Truncate drops the rest.
		size = min(size, int64(hdr.nPage)*pageSize)
	}
	// From one *os.File to another, io.CopyN copies with copy_file_range, in the kernel.
	if n, err := io.CopyN(out, db, size); err != nil {
		return fmt.Errorf("copy %s to %s: %d of %d bytes: %w", src, dst, n, size, err)
	}
	if walFile != nil {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := applyWAL(walFile, hdr, out); err != nil {
			return err
		}
	}
	if wal && hdr.nPage > 0 {
		if err := out.Truncate(int64(hdr.nPage) * pageSize); err != nil {
			return err
		}
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("write %s: %w", dst, err)
	}
	return ctx.Err()
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

// applyWAL writes frames 1 to hdr.mxFrame of the WAL f into out at their pages' offsets, in
// order, after checking that each one belongs to the header's WAL (its salt) and that their
// checksums chain from the WAL header to the checksum the -shm header records.
func applyWAL(f *os.File, hdr walIndexHeader, out *os.File) error {
	path := f.Name()
	r := bufio.NewReaderSize(io.NewSectionReader(f, walHeaderSize, int64(hdr.mxFrame)*(walFrameHeader+hdr.pageSize)), copyBufferBytes)
	be, order := binary.BigEndian, hdr.order
	sum := hdr.walCksum
	frame := make([]byte, walFrameHeader+hdr.pageSize)
	var last uint32 // the database size the last frame read commits, 0 if not a commit
	for i := uint32(1); i <= hdr.mxFrame; i++ {
		if _, err := io.ReadFull(r, frame); err != nil {
			return fmt.Errorf("%w: %s: frame %d of %d: %v", errUsePager, path, i, hdr.mxFrame, err)
		}
		walChecksum(order, frame[:8], &sum)
		walChecksum(order, frame[walFrameHeader:], &sum)
		pgno := be.Uint32(frame[0:])
		if pgno == 0 || !bytes.Equal(frame[8:16], hdr.salt[:]) ||
			sum != [2]uint32{be.Uint32(frame[16:]), be.Uint32(frame[20:])} {
			return fmt.Errorf("%w: %s: frame %d does not belong to the committed state", errUsePager, path, i)
		}
		last = be.Uint32(frame[4:])
		if _, err := out.WriteAt(frame[walFrameHeader:], int64(pgno-1)*hdr.pageSize); err != nil {
			return fmt.Errorf("write page %d: %w", pgno, err)
		}
	}
	if sum != hdr.frameCksum || last != hdr.nPage {
		return fmt.Errorf("%w: %s: frames end at checksum %x and size %d, the -shm header says %x and %d",
			errUsePager, path, sum, last, hdr.frameCksum, hdr.nPage)
	}
	return nil
}
