package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// holdLock starts a real `nightjar run` whose before hook signals and then sleeps, so the
// run holds the pipeline's lock; it returns the child and the hook's pid.
func holdLock(t *testing.T, f *opsFixture) (*os.Process, int) {
	t.Helper()
	ready := filepath.Join(f.dir, "hook.pid")
	appendConfig(t, f, "sinks:\n"+f.localSink("a")+
		"hooks:\n  before: 'if [ ! -e "+ready+" ]; then echo $$$$ > "+ready+".tmp && mv "+ready+".tmp "+ready+"; "+
		"while [ ! -e "+ready+".release ]; do sleep 0.05; done; fi'\n")
	cmd := opsNightjarCmd(t, nil, "run", "-c", f.config)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, err := os.ReadFile(ready)
		if err == nil {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil || pid <= 1 {
				t.Fatalf("hook wrote %q, not its pid", b)
			}
			t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
			return cmd.Process, pid
		}
		if time.Now().After(deadline) {
			t.Fatal("the first run never reached its before hook")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSecondRunFailsFastWhileLocked(t *testing.T) {
	f := newOpsFixture(t)
	first, _ := holdLock(t, f)

	start := time.Now()
	code, _, stderr := runCLI(t, "run", "-c", f.config)
	elapsed := time.Since(start)
	if code != exitFailed {
		t.Fatalf("exit %d, want %d\n%s", code, exitFailed, stderr)
	}
	want := fmt.Sprintf(`pipeline "testpipe" is locked by another run (pid %d)`, first.Pid)
	if !strings.Contains(stderr, want) {
		t.Fatalf("stderr %q does not contain %q", stderr, want)
	}
	if elapsed > 5*time.Second {
		t.Fatalf("the locked run took %s to fail", elapsed)
	}
	// The first run finishes normally once its hook does, and releases the lock.
	if err := os.WriteFile(filepath.Join(f.dir, "hook.pid.release"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := waitProcess(first); err != nil {
		t.Fatalf("first run: %v", err)
	}
	if code, _, stderr := runCLI(t, "run", "-c", f.config); code != exitOK {
		t.Fatalf("run after the lock was released: exit %d\n%s", code, stderr)
	}
}

func TestKilledRunLeavesNoStaleLock(t *testing.T) {
	f := newOpsFixture(t)
	first, _ := holdLock(t, f)
	if err := first.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	first.Wait()
	// The lock file is still there; the kernel dropped the flock with the process.
	if _, err := os.Stat(filepath.Join(f.state, "locks", "testpipe.lock")); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, "run", "-c", f.config, "--json")
	if code != exitOK {
		t.Fatalf("run after a crashed run: exit %d\n%s", code, stderr)
	}
	if rep := decodeReport(t, stdout); rep.Status != "ok" {
		t.Fatalf("report: %+v", rep)
	}
}

func waitProcess(p *os.Process) error {
	st, err := p.Wait()
	if err != nil {
		return err
	}
	if !st.Success() {
		return fmt.Errorf("%s", st)
	}
	return nil
}

// readEnv reads a file of `env` output.
func readEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatalf("hook did not run: %v", err)
	}
	defer fh.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && strings.HasPrefix(k, "NIGHTJAR_") {
			out[k] = v
		}
	}
	return out
}
