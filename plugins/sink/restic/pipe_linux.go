package restic

import (
	"os"

	"golang.org/x/sys/unix"
)

// growPipe enlarges the pipe w writes into to stdinPipeSize, or to the largest size below
// it that the system allows (fs.pipe-max-size), best effort: a smaller pipe only costs
// speed. (SyscallConn, not Fd, which would switch w to blocking writes.)
func growPipe(w *os.File) {
	rc, err := w.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		for size := stdinPipeSize; size > 64<<10; size /= 2 {
			if _, err := unix.FcntlInt(fd, unix.F_SETPIPE_SZ, size); err == nil {
				return
			}
		}
	})
}
