package retention

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/gob"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/sys"
)

// ChildArg is the argument that makes a nightjar binary (or a test binary, from its
// TestMain) run ChildMain: `nightjar __policy-child`.
const ChildArg = "__policy-child"

// RunInChild makes the host evaluate policies in a child process started as argv (the
// nightjar binary with ChildArg), which is killed when the evaluation's time limit is
// reached.
//
// Why: in-process, the only way wazero can stop an endless loop is WithCloseOnContextDone,
// which makes every loop header of the module (and Go's WebAssembly enters one on every
// function call) call back into the host; that made the built-in gfs on 10,000 snapshots
// 3-4x slower. A child process runs the module without those checks, in the same sandbox
// (memory limit, no files, environment or network, fixed clock), and the timeout is
// enforced by killing the process.
//
// Child mode needs the on-disk compilation cache (a host made with cacheDir ""; stays
// in-process, since the child would compile the module from scratch on every evaluation).
// The child's compiled modules live in a separate cache directory: wazero's cache key does
// not include the termination setting, and a module compiled without the checks must never
// be loaded by an in-process host.
func (h *Host) RunInChild(argv ...string) error {
	if h.cacheDir == "" || len(argv) == 0 {
		return nil
	}
	c, err := wazero.NewCompilationCacheWithDir(childCacheDir(h.cacheDir))
	if err != nil {
		return fmt.Errorf("policy compilation cache %s: %w", childCacheDir(h.cacheDir), err)
	}
	h.child, h.childCache = append([]string(nil), argv...), c
	return nil
}

func childCacheDir(cacheDir string) string { return filepath.Join(cacheDir, "child") }

// compileForChild checks a module for a child-mode Policy. The child compiles (and so
// validates and checks) the module on every evaluation anyway, so this check is only for
// reporting a bad module early: once a module has passed it, a marker named by its hash in
// the child's cache directory saves the second load of the module in every later process.
func (h *Host) compileForChild(ctx context.Context, name string, wasm []byte, lim Limits) (*Policy, error) {
	dir := childCacheDir(h.cacheDir)
	sum := sha256.Sum256(wasm)
	marker := filepath.Join(dir, "checked-"+hex.EncodeToString(sum[:]))
	p := &Policy{name: name, lim: lim.withDefaults(), wasm: wasm, child: h.child, cacheDir: dir}
	if _, err := os.Stat(marker); err == nil {
		return p, nil
	}
	checked, err := compile(ctx, h.childCache, name, wasm, lim, false)
	if err != nil {
		return nil, err
	}
	_ = checked.Close(ctx)
	_ = os.WriteFile(marker, nil, 0o600) // best effort: without it the next process checks again
	return p, nil
}

type childRequest struct {
	Name      string
	Wasm      []byte
	CacheDir  string
	MemoryMiB int
	Timeout   time.Duration
	Now       time.Time
	Stdin     []byte
	StdoutMax int
}

type childResponse struct {
	Stdout, Stderr         []byte
	StdoutOver, StderrOver bool
	HasExit                bool
	Exit                   uint32
	Err                    string
}

// evalInChild runs the module once in a child process, killed when ctx is done.
func (p *Policy) evalInChild(ctx context.Context, stdin []byte, now time.Time, stdoutMax int) (stdout, stderr *capped, err error) {
	var req bytes.Buffer
	if err := gob.NewEncoder(&req).Encode(childRequest{Name: p.name, Wasm: p.wasm, CacheDir: p.cacheDir,
		MemoryMiB: p.lim.MemoryMiB, Timeout: p.lim.Timeout, Now: now, Stdin: stdin, StdoutMax: stdoutMax}); err != nil {
		return nil, nil, fmt.Errorf("encode child request: %w", err)
	}
	resp := &capped{max: stdoutMax + 2*stderrCap + 1<<16}
	procErr := &capped{max: stderrCap}
	cmd := exec.CommandContext(ctx, p.child[0], p.child[1:]...)
	cmd.Env = []string{} // nothing of this process's environment
	cmd.Stdin, cmd.Stdout, cmd.Stderr = &req, resp, procErr
	cmd.WaitDelay = time.Second
	runErr := cmd.Run()
	if ctx.Err() != nil {
		code := uint32(sys.ExitCodeContextCanceled)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			code = sys.ExitCodeDeadlineExceeded
		}
		return &capped{}, &capped{}, sys.NewExitError(code)
	}
	if runErr != nil || resp.over {
		return &capped{}, procErr, fmt.Errorf("policy child process %s: %v", p.child[0], runErr)
	}
	var r childResponse
	if err := gob.NewDecoder(bytes.NewReader(resp.buf)).Decode(&r); err != nil {
		return &capped{}, procErr, fmt.Errorf("policy child process %s: bad answer: %v", p.child[0], err)
	}
	stdout = &capped{buf: r.Stdout, max: stdoutMax, over: r.StdoutOver}
	stderr = &capped{buf: r.Stderr, max: stderrCap, over: r.StderrOver}
	switch {
	case r.HasExit:
		err = sys.NewExitError(r.Exit)
	case r.Err != "":
		err = errors.New(r.Err)
	}
	return stdout, stderr, err
}

// errOutputOver stops a module whose output passed its cap (raised from its fd_write).
var errOutputOver = errors.New("output cap exceeded")

// ChildMain is the child process side of RunInChild: it reads one request on stdin,
// evaluates it and writes the answer on stdout. It returns the process exit status.
func ChildMain() int {
	// A child lives for one evaluation: no GC cycles, only a ceiling well above the module's
	// memory limit and the compiled code.
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(512 << 20)
	var req childRequest
	if err := gob.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fmt.Fprintln(os.Stderr, "policy child: read request:", err)
		return 2
	}
	lim := Limits{MemoryMiB: req.MemoryMiB, Timeout: req.Timeout}.withDefaults()
	debug.SetMemoryLimit(int64(lim.MemoryMiB)<<20 + 512<<20)
	// The parent kills this process at the time limit; should the parent be gone, stop
	// anyway.
	time.AfterFunc(lim.Timeout+5*time.Second, func() { os.Exit(3) })
	ctx := context.Background()
	cache := wazero.NewCompilationCache()
	if req.CacheDir != "" {
		c, err := wazero.NewCompilationCacheWithDir(req.CacheDir)
		if err != nil {
			fmt.Fprintln(os.Stderr, "policy child: compilation cache:", err)
			return 2
		}
		cache = c
	}
	p, err := compile(ctx, cache, req.Name, req.Wasm, lim, false)
	if err != nil {
		fmt.Fprintln(os.Stderr, "policy child:", err)
		return 2
	}
	stdout := &capped{max: req.StdoutMax, onOver: func() { panic(errOutputOver) }}
	stderr := &capped{max: stderrCap}
	runErr := p.run(ctx, req.Stdin, req.Now, stdout, stderr)
	r := childResponse{Stdout: stdout.buf, Stderr: stderr.buf, StdoutOver: stdout.over, StderrOver: stderr.over}
	var exit *sys.ExitError
	if errors.As(runErr, &exit) {
		r.HasExit, r.Exit = true, exit.ExitCode()
	} else if runErr != nil {
		r.Err = runErr.Error()
	}
	if err := gob.NewEncoder(os.Stdout).Encode(r); err != nil {
		fmt.Fprintln(os.Stderr, "policy child: write answer:", err)
		return 2
	}
	return 0
}
