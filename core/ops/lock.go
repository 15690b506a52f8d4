package ops

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrLocked is returned by Lock when another process holds the pipeline's lock.
var ErrLocked = errors.New("locked")

// Lock is a held per-pipeline lock. The kernel releases a flock when its holder exits, so a
// crashed or killed run never leaves a stale lock behind; the lock file itself stays.
type Lock struct {
	f *os.File
}

// LockPath is the lock file of pipeline in stateDir.
func LockPath(stateDir, pipeline string) string {
	return filepath.Join(stateDir, "locks", pipeline+".lock")
}

// AcquireLock takes the pipeline's lock without waiting. When another process holds it, the
// error wraps ErrLocked and names the holder's pid (written into the lock file).
func AcquireLock(stateDir, pipeline string) (*Lock, error) {
	path := LockPath(stateDir, pipeline)
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o640)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("pipeline %q is %w by another run (%s) on this host; lock file %s",
				pipeline, ErrLocked, holder(path), path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// The pid is only for the message above; the flock is what excludes.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

func holder(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "pid unknown"
	}
	pid := strings.TrimSpace(string(b))
	if _, err := strconv.Atoi(pid); err != nil {
		return "pid unknown"
	}
	return "pid " + pid
}

// Release unlocks. It is safe to call more than once.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	f := l.f
	l.f = nil
	_ = f.Truncate(0)
	return f.Close() // closing the only descriptor releases the flock
}
