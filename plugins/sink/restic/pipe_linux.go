package restic

import (
	"os"

	"golang.org/x/sys/unix"
)

// growPipe enlarges the pipe w writes into to stdinPipeSize, best effort: a smaller pipe
// only costs speed. (SyscallConn, not Fd, which would switch w to blocking writes.)
func growPipe(w *os.File) {
	rc, err := w.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, stdinPipeSize)
	})
}
