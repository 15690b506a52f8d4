package restic

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// runner starts the restic binary: with an explicit environment (never the host's), in
// its own process group, interrupted with the caller's context. Its errors name the restic
// command and carry a summary of restic's stderr with every secret scrubbed.
type runner struct {
	bin         string
	env         []string // the child's whole environment
	secrets     []string // values scrubbed from anything restic prints
	feat        features
	lockTimeout time.Duration // how long a lock held by another process is waited for
	killGrace   time.Duration // SIGINT first; SIGKILL after this
	log         *slog.Logger
}

// proc is one running restic process.
type proc struct {
	r      *runner
	cmd    *exec.Cmd
	sub    string // the restic command, e.g. "backup"
	stderr *tail
	ctx    context.Context
	exited chan struct{} // closed once the process has been reaped; err is then set
	err    error
	once   sync.Once
}

// start runs restic with args. With stdin true, the caller gets the write end of restic's
// stdin (closing it is the caller's job: restic sees EOF). With stdout nil, the caller gets
// the read end of restic's stdout. Either pipe is nil when not asked for.
func (r *runner) start(ctx context.Context, args []string, stdin bool, stdout io.Writer) (p *proc, in *os.File, out *os.File, err error) {
	full := r.globalArgs(args)
	cmd := exec.Command(r.bin, full...)
	cmd.Env = r.env
	// Own process group: a cancel reaches restic and anything it started (ssh, rclone).
	// Pdeathsig: a nightjar that dies takes restic with it instead of leaving it running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	p = &proc{r: r, cmd: cmd, sub: args[0], stderr: &tail{max: 16 << 10}, ctx: ctx, exited: make(chan struct{})}
	cmd.Stderr = p.stderr

	var closeOnStart, closeOnFail []*os.File
	defer func() {
		for _, f := range closeOnStart {
			f.Close()
		}
		if err != nil {
			for _, f := range closeOnFail {
				f.Close()
			}
		}
	}()
	if stdin {
		pr, pw, perr := os.Pipe()
		if perr != nil {
			return nil, nil, nil, fmt.Errorf("restic %s: %w", p.sub, perr)
		}
		growPipe(pw)
		cmd.Stdin, in = pr, pw
		closeOnStart, closeOnFail = append(closeOnStart, pr), append(closeOnFail, pw)
	}
	if stdout == nil {
		pr, pw, perr := os.Pipe()
		if perr != nil {
			return nil, nil, nil, fmt.Errorf("restic %s: %w", p.sub, perr)
		}
		cmd.Stdout, out = pw, pr
		closeOnStart, closeOnFail = append(closeOnStart, pw), append(closeOnFail, pr)
	} else {
		cmd.Stdout = stdout
	}
	r.log.Debug("running restic", "args", full)
	if err := cmd.Start(); err != nil {
		return nil, nil, nil, fmt.Errorf("restic %s: start %s: %w", p.sub, r.bin, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	go func() {
		select {
		case <-ctx.Done():
			p.interrupt()
		case <-p.exited:
		}
	}()
	return p, in, out, nil
}

func (r *runner) globalArgs(args []string) []string {
	var g []string
	if r.feat.retryLock && r.lockTimeout > 0 {
		g = append(g, "--retry-lock", r.lockTimeout.String())
	}
	return append(g, args...)
}

// interrupt stops restic's process group: SIGINT, so restic removes its lock and exits
// without writing a snapshot, then SIGKILL if it is still there after the grace period.
func (p *proc) interrupt() {
	p.once.Do(func() {
		select {
		case <-p.exited: // reaped: its pid may belong to another process by now
			return
		default:
		}
		pgid := p.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGINT)
		go func() {
			t := time.NewTimer(p.r.killGrace)
			defer t.Stop()
			select {
			case <-t.C:
				_ = syscall.Kill(-pgid, syscall.SIGKILL)
			case <-p.exited:
			}
		}()
	})
}

// wait waits for restic to exit and returns a *cmdError when it failed.
func (p *proc) wait() error {
	<-p.exited
	if p.err == nil {
		return nil
	}
	e := &cmdError{sub: p.sub, stderr: p.r.scrub(p.stderr.summary()), cause: p.err}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		e.code = ee.ExitCode()
	}
	if err := p.ctx.Err(); err != nil {
		e.kind, e.cause = errInterrupted, err
		return e
	}
	e.kind = classify(e.code, e.stderr)
	return e
}

// run runs a restic command to completion; stdout goes to w (io.Discard when nil).
func (r *runner) run(ctx context.Context, w io.Writer, args ...string) error {
	if w == nil {
		w = io.Discard
	}
	p, _, _, err := r.start(ctx, args, false, w)
	if err != nil {
		return err
	}
	return p.wait()
}

// output runs a restic command and returns its stdout (at most limit bytes).
func (r *runner) output(ctx context.Context, limit int64, args ...string) ([]byte, error) {
	var buf limitedBuffer
	buf.max = limit
	if err := r.run(ctx, &buf, args...); err != nil {
		return nil, err
	}
	if buf.over {
		return nil, fmt.Errorf("restic %s: output is larger than %d bytes", args[0], limit)
	}
	return buf.Bytes(), nil
}

// retryLocked calls attempt until it succeeds, fails for a reason other than a lock held
// by another restic process, canRetry (when given) says no, or lockTimeout has passed.
// The first contention runs `restic unlock`, which removes only stale locks: those of
// processes that are gone from this host (a restic killed mid-backup) or older than 30
// minutes. restic 0.14 has no --retry-lock, so this loop is the waiting; newer restic waits
// itself (--retry-lock) and this loop only adds the stale-lock removal.
func (r *runner) retryLocked(ctx context.Context, attempt func() error, canRetry func() bool) error {
	deadline := time.Now().Add(r.lockTimeout)
	delay := time.Second
	unlocked := false
	for {
		err := attempt()
		if !isKind(err, errLocked) || canRetry != nil && !canRetry() {
			return err
		}
		if !unlocked {
			unlocked = true
			r.log.Info("restic repository is locked by another process; removing stale locks (restic unlock) and retrying")
			if uerr := r.run(ctx, nil, "unlock"); uerr != nil {
				r.log.Warn("restic unlock (stale locks only) failed", "err", uerr)
			}
			continue
		}
		if r.feat.retryLock || time.Now().Add(delay).After(deadline) {
			return fmt.Errorf("%w (waited %s for the lock)", err, r.lockTimeout)
		}
		r.log.Info("restic repository is locked by another process; waiting", "retry_in", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (stopped waiting: %v)", err, ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, 30*time.Second)
	}
}

// scrub replaces every secret in s.
func (r *runner) scrub(s string) string {
	for _, sec := range r.secrets {
		s = strings.ReplaceAll(s, sec, "***")
	}
	return s
}

// errKind is what a restic failure means to the caller.
type errKind int

const (
	errOther errKind = iota
	errLocked
	errNoRepository
	errWrongPassword
	errInterrupted
)

// classify reads restic's exit code (restic 0.17 and newer: 10 no repository, 11 lock
// failed, 12 wrong password) and, for older releases that exit 1, its messages.
func classify(code int, stderr string) errKind {
	switch {
	case code == 11 || strings.Contains(stderr, "repository is already locked"):
		return errLocked
	case code == 12 || strings.Contains(stderr, "wrong password or no key found"):
		return errWrongPassword
	case code == 10 || strings.Contains(stderr, "Is there a repository at the following location?"):
		return errNoRepository
	}
	return errOther
}

// cmdError is a failed restic command.
type cmdError struct {
	sub    string
	kind   errKind
	code   int
	stderr string // scrubbed summary
	cause  error
}

func (e *cmdError) Error() string {
	var hint string
	switch e.kind {
	case errWrongPassword:
		hint = "wrong password or no key found: check password / password_file (the repository exists but does not open with this password)"
	case errNoRepository:
		hint = "restic cannot open a repository at this location: if there is none yet, create it with `restic init` (same repository, password and env) or set `init: true` in this sink; otherwise check the location and the backend credentials in env"
	case errLocked:
		hint = "the repository is locked by another restic process (a prune or check?)"
	case errInterrupted:
		return fmt.Sprintf("restic %s: interrupted: %v", e.sub, e.cause)
	}
	msg := fmt.Sprintf("restic %s: %v", e.sub, e.cause)
	if hint != "" {
		msg += ": " + hint
	}
	if e.stderr != "" {
		msg += " (restic said: " + e.stderr + ")"
	}
	return msg
}

func (e *cmdError) Unwrap() error { return e.cause }

func isKind(err error, k errKind) bool {
	var ce *cmdError
	return errors.As(err, &ce) && ce.kind == k
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

// summary is the last few non-empty lines, joined, at most 1000 characters.
func (t *tail) summary() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var lines []string
	for _, l := range strings.Split(string(t.b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > 6 {
		lines = lines[len(lines)-6:]
	}
	s := strings.Join(lines, "; ")
	if len(s) > 1000 {
		s = "..." + s[len(s)-1000:]
	}
	return s
}

// limitedBuffer keeps at most max bytes and notes when more came.
type limitedBuffer struct {
	bytes.Buffer
	max  int64
	over bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - int64(b.Len()); int64(len(p)) > room {
		b.over = true
		if room > 0 {
			b.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return b.Buffer.Write(p)
}
