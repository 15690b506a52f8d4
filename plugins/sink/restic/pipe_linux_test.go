package restic

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestGrowPipe(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/fs/pipe-max-size")
	if err != nil {
		t.Fatal(err)
	}
	limit, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	growPipe(pw)
	var size, flags int
	var sizeErr, flagsErr error
	rc, err := pw.SyscallConn() // not Fd, which would itself switch to blocking mode
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) {
		size, sizeErr = unix.FcntlInt(fd, unix.F_GETPIPE_SZ, 0)
		flags, flagsErr = unix.FcntlInt(fd, unix.F_GETFL, 0)
	})
	if sizeErr != nil || flagsErr != nil {
		t.Fatal(sizeErr, flagsErr)
	}
	if want := min(stdinPipeSize, limit); size < want {
		t.Fatalf("pipe size after growPipe = %d, want at least %d", size, want)
	}
	// The write end must stay non-blocking (the runtime's poller), as os.Pipe made it.
	if flags&unix.O_NONBLOCK == 0 {
		t.Fatal("growPipe switched the pipe to blocking mode")
	}
}
