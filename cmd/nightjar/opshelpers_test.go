package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// opsNightjarCmd returns the CLI (built once per test binary, see bins) as a child process
// with a clean environment, for what needs a real process: a lock held by another pid, a
// run killed with SIGKILL, a pseudo-terminal.
func opsNightjarCmd(t *testing.T, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(filepath.Join(bins(t), "nightjar"), args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "LANG=C.UTF-8"}, env...)
	return cmd
}

// runCLI runs the CLI in process and returns its exit code, stdout and stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := execute(context.Background(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// opsFixture is a small pipeline in a temp folder: a tree source and local sinks.
type opsFixture struct {
	dir, data, state, config string
}

// newOpsFixture writes files to back up and a config; callers append sinks, notify,
// metrics and hooks with appendConfig.
func newOpsFixture(t *testing.T) *opsFixture {
	t.Helper()
	dir := t.TempDir()
	f := &opsFixture{dir: dir, data: filepath.Join(dir, "data"), state: filepath.Join(dir, "state"), config: filepath.Join(dir, "nightjar.yaml")}
	for name, body := range map[string]string{"a.txt": "alpha\n", "sub/b.txt": strings.Repeat("bravo ", 1000)} {
		p := filepath.Join(f.data, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := "version: 1\npipeline: testpipe\nstate_dir: " + f.state + "\n" +
		"sources:\n  - {name: data, type: tree, path: " + f.data + "}\n" +
		"transforms:\n  - {type: zstd, level: 3}\n"
	if err := os.WriteFile(f.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *opsFixture) localSink(name string) string {
	return "  - {name: " + name + ", type: local, path: " + filepath.Join(f.dir, name) + "}\n"
}

func appendConfig(t *testing.T, f *opsFixture, extra string) {
	t.Helper()
	fh, err := os.OpenFile(f.config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if _, err := fh.WriteString(extra); err != nil {
		t.Fatal(err)
	}
}
