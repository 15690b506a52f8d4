package ops

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Hook names, as in the config's hooks section.
const (
	HookBefore  = "before"
	HookAfter   = "after"
	HookOnError = "on_error"
)

// Hooks runs the config's shell hooks with `sh -c`.
type Hooks struct {
	Commands map[string]string // by hook name; empty means none
	Timeout  time.Duration
	Output   io.Writer // the hooks' stdout and stderr (never nightjar's stdout: --json owns it)
}

// Run runs the named hook, if configured, with NIGHTJAR_* variables describing r added to
// nightjar's own environment. The hook, and everything it started, is killed at the timeout.
func (h *Hooks) Run(ctx context.Context, name string, r *Run) error {
	script := strings.TrimSpace(h.Commands[name])
	if script == "" {
		return nil
	}
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	// A failed run still runs on_error when the run itself was cancelled.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", script)
	cmd.Env = append(os.Environ(), HookEnv(name, r)...)
	out := h.Output
	if out == nil {
		out = io.Discard
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("hook %s: killed after its timeout of %s", name, timeout)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return fmt.Errorf("hook %s: %s", name, ee.ProcessState)
	}
	if err != nil {
		return fmt.Errorf("hook %s: %w", name, err)
	}
	return nil
}

// HookEnv is the environment that describes r to a hook.
func HookEnv(hook string, r *Run) []string {
	var committed, failed []string
	for _, s := range r.Sinks {
		if s.Committed {
			committed = append(committed, s.Name)
		} else {
			failed = append(failed, s.Name)
		}
	}
	env := []string{
		"NIGHTJAR_HOOK=" + hook,
		"NIGHTJAR_PIPELINE=" + r.Pipeline,
		"NIGHTJAR_CONFIG=" + r.Config,
		"NIGHTJAR_HOST=" + r.Host,
		"NIGHTJAR_SNAPSHOT=" + r.Snapshot,
		"NIGHTJAR_STATUS=" + r.Status,
		"NIGHTJAR_SINKS_COMMITTED=" + strings.Join(committed, " "),
		"NIGHTJAR_SINKS_FAILED=" + strings.Join(failed, " "),
	}
	if hook != HookBefore {
		env = append(env,
			"NIGHTJAR_EXIT_CODE="+strconv.Itoa(r.ExitCode),
			"NIGHTJAR_ERROR="+oneLine(r.Error),
			"NIGHTJAR_RAW_BYTES="+strconv.FormatInt(r.RawBytes, 10),
			"NIGHTJAR_DURATION_SECONDS="+strconv.FormatFloat(r.Finished.Sub(r.Started).Seconds(), 'f', 3, 64))
	}
	return env
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 2000 {
		s = s[:2000]
	}
	return s
}
