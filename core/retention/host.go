package retention

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
)

// Limits bound one policy evaluation.
type Limits struct {
	MemoryMiB int           // linear memory limit; default 64
	Timeout   time.Duration // wall time of one evaluation; default 5s
}

// Defaults of Limits, as documented in the config reference.
const (
	DefaultMemoryMiB = 64
	DefaultTimeout   = 5 * time.Second
	stderrCap        = 64 << 10
)

func (l Limits) withDefaults() Limits {
	if l.MemoryMiB <= 0 {
		l.MemoryMiB = DefaultMemoryMiB
	}
	if l.Timeout <= 0 {
		l.Timeout = DefaultTimeout
	}
	return l
}

// Builtin is a policy embedded in the binary.
type Builtin struct {
	Module []byte
	// Bounded vouches that the module always finishes on its own, in time bounded by the
	// size of its input: it is our own code, built reproducibly from source we read, with
	// no loop that its input does not bound. Such a module runs without wazero's
	// interruption checks (see Evaluate for how its time limit is then kept). Only a module
	// byte-identical to Module gets this; set it for nothing that runs code of a user's.
	Bounded bool
}

// Host compiles and runs policy modules. One Host is shared by every evaluation of a
// process; its compilation cache lives on disk so a module is compiled once per version.
type Host struct {
	cache wazero.CompilationCache
	// bounded caches the modules compiled without interruption checks. It is a cache of
	// its own (its own folder on disk) so that a module compiled without the checks can
	// never be loaded for one that needs them, whatever wazero's cache key holds.
	bounded  wazero.CompilationCache
	builtins map[string]Builtin
}

// boundedCacheDir is the folder, inside a host's cache folder, of the modules compiled
// without interruption checks.
const boundedCacheDir = "bounded"

// NewHost returns a host whose compilation cache is in cacheDir ("" keeps it in memory) and
// that knows the given built-in policies by name.
func NewHost(cacheDir string, builtins map[string]Builtin) (*Host, error) {
	h := &Host{builtins: builtins}
	if cacheDir == "" {
		h.cache, h.bounded = wazero.NewCompilationCache(), wazero.NewCompilationCache()
		return h, nil
	}
	if err := os.MkdirAll(cacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("policy compilation cache: %w", err)
	}
	c, err := wazero.NewCompilationCacheWithDir(cacheDir)
	if err != nil {
		return nil, fmt.Errorf("policy compilation cache %s: %w", cacheDir, err)
	}
	bdir := filepath.Join(cacheDir, boundedCacheDir)
	b, err := wazero.NewCompilationCacheWithDir(bdir)
	if err != nil {
		_ = c.Close(context.Background())
		return nil, fmt.Errorf("policy compilation cache %s: %w", bdir, err)
	}
	h.cache, h.bounded = c, b
	return h, nil
}

// Close releases the compilation caches (the files stay on disk).
func (h *Host) Close(ctx context.Context) error {
	return errors.Join(h.cache.Close(ctx), h.bounded.Close(ctx))
}

// Builtins lists the built-in policy names.
func (h *Host) Builtins() []string {
	var names []string
	for n := range h.builtins {
		names = append(names, n)
	}
	return names
}

// Resolve returns the module bytes of a policy: a built-in name, or the path of a .wasm
// file (relative paths are resolved against baseDir).
func (h *Host) Resolve(policy, baseDir string) (name string, wasm []byte, err error) {
	if b, ok := h.builtins[policy]; ok {
		return policy, b.Module, nil
	}
	if !strings.ContainsAny(policy, `/\`) && !strings.HasSuffix(policy, ".wasm") {
		return "", nil, fmt.Errorf("unknown policy %q: expected a built-in name (%s) or the path of a .wasm module",
			policy, strings.Join(h.Builtins(), ", "))
	}
	p := policy
	if !filepath.IsAbs(p) && baseDir != "" {
		p = filepath.Join(baseDir, p)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return "", nil, fmt.Errorf("policy %s: %w", policy, err)
	}
	return p, b, nil
}

// Policy is a compiled module ready to evaluate, with its limits. Evaluate may be called
// many times (each call is a fresh instance); Close releases it.
type Policy struct {
	name string
	rt   wazero.Runtime
	mod  wazero.CompiledModule
	lim  Limits
	// bounded: compiled without interruption checks (a Bounded built-in); its run cannot
	// be stopped, only its result refused.
	bounded bool
}

// Compile prepares a module. name is used in errors.
func (h *Host) Compile(ctx context.Context, name string, wasm []byte, lim Limits) (*Policy, error) {
	lim = lim.withDefaults()
	bounded := h.isBounded(wasm)
	cache := h.cache
	if bounded {
		cache = h.bounded
	}
	cfg := wazero.NewRuntimeConfigCompiler().
		WithCompilationCache(cache).
		// The checks that let a context stop a module cost a call into Go at every loop
		// header, and Go's WebAssembly has a loop in every function: evaluation takes 2-3x
		// as long. A module that finishes on its own does without them.
		WithCloseOnContextDone(!bounded).
		// 64 KiB pages. Each run's memory is an arena of the limit (memory.go): growing
		// by reallocation would copy the whole memory on every grow, which made a
		// 10,000-snapshot evaluation 10x slower.
		WithMemoryLimitPages(uint32(lim.MemoryMiB) * 16)
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		_ = rt.Close(ctx)
		return nil, fmt.Errorf("policy %s: wasi: %w", name, err)
	}
	mod, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		_ = rt.Close(ctx)
		return nil, fmt.Errorf("policy %s: not a valid WebAssembly module: %w", name, err)
	}
	for _, imp := range mod.ImportedFunctions() {
		if m, _, _ := imp.Import(); m != wasi_snapshot_preview1.ModuleName {
			_ = rt.Close(ctx)
			return nil, fmt.Errorf("policy %s: imports from %q; a policy may import only %s", name, m, wasi_snapshot_preview1.ModuleName)
		}
	}
	if _, ok := mod.ExportedFunctions()["_start"]; !ok {
		_ = rt.Close(ctx)
		return nil, fmt.Errorf("policy %s: no _start export: a policy is a WASI command module (a Go main package built with GOOS=wasip1 GOARCH=wasm)", name)
	}
	return &Policy{name: name, rt: rt, mod: mod, lim: lim, bounded: bounded}, nil
}

// isBounded reports whether wasm is a built-in that vouches it finishes on its own.
func (h *Host) isBounded(wasm []byte) bool {
	for _, b := range h.builtins {
		if b.Bounded && bytes.Equal(b.Module, wasm) {
			return true
		}
	}
	return false
}

// Close releases the compiled module.
func (p *Policy) Close(ctx context.Context) error { return p.rt.Close(ctx) }

// Name is the policy's name (built-in name or file path).
func (p *Policy) Name() string { return p.name }

// Evaluate runs the policy once on in and returns its checked output. Every failure is an
// error; the caller then deletes nothing.
//
// A module that can loop is stopped when the time limit passes or ctx is canceled. A
// Bounded built-in runs to its end, which its input bounds (the input must fit in its
// memory limit, and the built-in does at most n log n work on n snapshots); if the limit
// passed or ctx was canceled meanwhile, its result is refused with the same error, so the
// limit still decides whether anything is deleted. It only cannot cut that run short.
func (p *Policy) Evaluate(ctx context.Context, in *Input) (*Output, error) {
	withLimits := *in
	withLimits.Limits = &InputLimits{MemoryMiB: p.lim.MemoryMiB, TimeoutMS: p.lim.Timeout.Milliseconds()}
	stdin, err := withLimits.Encode()
	if err != nil {
		return nil, fmt.Errorf("policy %s: encode input: %w", p.name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, p.lim.Timeout)
	defer cancel()
	// A policy that writes more than any honest output is stopped at once.
	stdout := &capped{max: 1<<20 + 1024*len(in.Snapshots), onOver: cancel}
	stderr := &capped{max: stderrCap}
	now := in.Now
	mc := wazero.NewModuleConfig().
		WithName("").
		WithArgs("policy").
		WithStdin(bytes.NewReader(stdin)).
		WithStdout(stdout).
		WithStderr(stderr).
		// The module's clock is fixed to the input's now: a policy is a function of its input.
		WithWalltime(func() (int64, int32) { return now.Unix(), int32(now.Nanosecond()) }, sys.ClockResolution(1))
	start := time.Now()
	var mem arena
	var mod api.Module
	if err = ctxExit(ctx); err == nil { // already too late: don't start
		mod, err = p.rt.InstantiateModule(experimental.WithMemoryAllocator(ctx, &mem), p.mod, mc)
	}
	if mod != nil {
		_ = mod.Close(context.Background())
	}
	mem.release() // the run has returned and its module is closed
	if p.bounded {
		if done := ctxExit(ctx); done != nil {
			// It ran to its end (it cannot be stopped), but too late or no longer wanted:
			// its result is refused as a stopped module's would be.
			err = done
		}
	}
	if stdout.over {
		return nil, fmt.Errorf("policy %s: output larger than %d bytes, stopped%s", p.name, stdout.max, stderrNote(stderr))
	}
	if err := p.runError(ctx, err, start, stderr); err != nil {
		return nil, err
	}
	out, err := ParseOutput(stdout.buf, in)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w%s", p.name, err, stderrNote(stderr))
	}
	return out, nil
}

// ctxExit is the exit error wazero gives a module stopped because ctx is done; nil while
// ctx is not done.
func ctxExit(ctx context.Context) error {
	switch err := ctx.Err(); {
	case err == nil:
		return nil
	case errors.Is(err, context.DeadlineExceeded):
		return sys.NewExitError(sys.ExitCodeDeadlineExceeded)
	default:
		return sys.NewExitError(sys.ExitCodeContextCanceled)
	}
}

func (p *Policy) runError(ctx context.Context, err error, start time.Time, stderr *capped) error {
	if err == nil {
		return nil
	}
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		switch exit.ExitCode() {
		case 0:
			return nil
		case sys.ExitCodeDeadlineExceeded:
			what := "stopped after"
			if p.bounded {
				what = "result refused: ran for"
			}
			return fmt.Errorf("policy %s: %s %s: time limit %s exceeded%s", p.name, what,
				time.Since(start).Round(time.Millisecond), p.lim.Timeout, stderrNote(stderr))
		case sys.ExitCodeContextCanceled:
			return fmt.Errorf("policy %s: canceled: %w", p.name, context.Cause(ctx))
		default:
			if strings.Contains(stderr.String(), "out of memory") {
				return fmt.Errorf("policy %s: out of memory (limit %d MiB), exited with status %d%s", p.name, p.lim.MemoryMiB, exit.ExitCode(), stderrNote(stderr))
			}
			return fmt.Errorf("policy %s: exited with status %d%s", p.name, exit.ExitCode(), stderrNote(stderr))
		}
	}
	msg := err.Error()
	if strings.Contains(msg, "out of memory") || strings.Contains(stderr.String(), "out of memory") {
		return fmt.Errorf("policy %s: out of memory (limit %d MiB)%s", p.name, p.lim.MemoryMiB, stderrNote(stderr))
	}
	return fmt.Errorf("policy %s: trapped: %s%s", p.name, firstLine(msg), stderrNote(stderr))
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// stderrNote is the policy's stderr, trimmed, for error messages.
func stderrNote(c *capped) string {
	s := strings.TrimSpace(c.String())
	if s == "" {
		return ""
	}
	// The head: a Go panic or a policy's own message comes first; goroutine dumps follow.
	const max = 1000
	if len(s) > max {
		s = s[:max] + "… [trimmed]"
	} else if c.over {
		s += "… [trimmed]"
	}
	return "; policy stderr: " + s
}

// capped is a buffer that keeps at most max bytes and remembers if more were written. It
// never returns an error, so a chatty policy cannot crash on a failed write.
type capped struct {
	buf    []byte
	max    int
	over   bool
	onOver func() // called once when the cap is first exceeded
}

func (c *capped) Write(p []byte) (int, error) {
	room := c.max - len(c.buf)
	if len(p) > room {
		if !c.over && c.onOver != nil {
			c.onOver()
		}
		c.over = true
		if room > 0 {
			c.buf = append(c.buf, p[:room]...)
		}
		return len(p), nil
	}
	c.buf = append(c.buf, p...)
	return len(p), nil
}

func (c *capped) String() string { return string(c.buf) }
