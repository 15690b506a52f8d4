package blob

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// AttachRing gives cmd a data ring before it starts: a sealed memfd of ringSlots slots
// and one end of a socket pair, inherited by the plugin, which finds their fds in
// NIGHTJAR_BLOB_RING. Call Started once cmd has started (or failed to), and Close after
// the plugin has stopped. Where there is no memfd (not Linux) it returns nil, and Puts use
// chunk messages.
func AttachRing(cmd *exec.Cmd) (*Ring, error) {
	const size = ringSlots * ChunkSize
	fd, err := unix.MemfdCreate("nightjar-blob-ring", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("data ring: memfd: %w", err)
	}
	memfd := os.NewFile(uintptr(fd), "nightjar-blob-ring")
	var mem []byte
	if err = unix.Ftruncate(fd, size); err == nil {
		// The plugin maps it: a memfd that could shrink under it would crash it.
		_, err = unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL)
	}
	if err == nil {
		mem, err = unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	}
	if err != nil {
		memfd.Close()
		return nil, fmt.Errorf("data ring: %w", err)
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		memfd.Close()
		unix.Munmap(mem)
		return nil, fmt.Errorf("data ring: socketpair: %w", err)
	}
	ctl := os.NewFile(uintptr(pair[0]), "nightjar-blob-ring-ctl") // non-blocking: deadlines work
	theirs := os.NewFile(uintptr(pair[1]), "nightjar-blob-ring-ctl")
	first := 3 + len(cmd.ExtraFiles)
	cmd.ExtraFiles = append(cmd.ExtraFiles, memfd, theirs)
	cmd.Env = append(cmd.Env, fmt.Sprintf("%s=%d,%d", ringEnv, first, first+1))
	return &Ring{mem: mem, ctl: ctl, child: []*os.File{memfd, theirs}, unmap: func() error { return unix.Munmap(mem) }}, nil
}

// openRing opens the data ring nightjar passed, if it passed one. The memfd is mapped
// read-only and closed; the socket is made close-on-exec, so that programs the plugin
// starts do not hold it, and non-blocking, so that it goes through the runtime's poller.
func openRing() (*ringIn, error) {
	v, ok := os.LookupEnv(ringEnv)
	if !ok {
		return nil, nil
	}
	os.Unsetenv(ringEnv)
	a, b, _ := strings.Cut(v, ",")
	memfd, err1 := strconv.Atoi(a)
	sock, err2 := strconv.Atoi(b)
	if err1 != nil || err2 != nil || memfd < 3 || sock < 3 {
		return nil, fmt.Errorf("%s=%q: expected two inherited file descriptors, MEMFD,SOCKET", ringEnv, v)
	}
	return ringFromFds(memfd, sock)
}

// ringFromFds maps memfd read-only and closes it, and takes sock as the control socket.
func ringFromFds(memfd, sock int) (*ringIn, error) {
	var st unix.Stat_t
	if err := unix.Fstat(memfd, &st); err != nil {
		return nil, fmt.Errorf("%s: fd %d: %w", ringEnv, memfd, err)
	}
	if st.Size < ChunkSize || st.Size%ChunkSize != 0 || st.Size > 64*ChunkSize {
		return nil, fmt.Errorf("%s: fd %d: %d bytes, not a ring of 1 MiB slots", ringEnv, memfd, st.Size)
	}
	mem, err := unix.Mmap(memfd, 0, int(st.Size), unix.PROT_READ, unix.MAP_SHARED)
	unix.Close(memfd)
	if err != nil {
		return nil, fmt.Errorf("%s: map fd %d: %w", ringEnv, memfd, err)
	}
	if err := checkSocket(sock); err != nil {
		unix.Munmap(mem)
		return nil, fmt.Errorf("%s: fd %d: %w", ringEnv, sock, err)
	}
	return newRingIn(mem, os.NewFile(uintptr(sock), "nightjar-blob-ring-ctl")), nil
}

// checkSocket checks that fd is a socket and makes it close-on-exec and non-blocking.
func checkSocket(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return errors.New("not a socket")
	}
	unix.CloseOnExec(fd)
	return unix.SetNonblock(fd, true)
}
