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

// TestMain lets tests run the real CLI as a child process (locking, crashes, terminals):
// the test binary re-executes itself as nightjar when NIGHTJAR_TEST_MAIN is set.
func TestMain(m *testing.M) {
	if os.Getenv("NIGHTJAR_TEST_MAIN") == "1" {
		os.Exit(execute(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// nightjarCmd returns the CLI as a child process with a clean environment.
func nightjarCmd(t *testing.T, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append([]string{"NIGHTJAR_TEST_MAIN=1", "PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "LANG=C.UTF-8"}, env...)
	return cmd
}

// runCLI runs the CLI in process and returns its exit code, stdout and stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := execute(context.Background(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// fixture is a small pipeline in a temp folder: a tree source and local sinks.
type fixture struct {
	dir, data, state, config string
}

// newFixture writes files to back up and a config whose extra YAML (sinks, notify, metrics,
// hooks) is appended.
func newFixture(t *testing.T, extra string) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{dir: dir, data: filepath.Join(dir, "data"), state: filepath.Join(dir, "state"), config: filepath.Join(dir, "nightjar.yaml")}
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
		"transforms:\n  - {type: zstd, level: 3}\n" + extra
	if err := os.WriteFile(f.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) localSink(name string) string {
	return "  - {name: " + name + ", type: local, path: " + filepath.Join(f.dir, name) + "}\n"
}
