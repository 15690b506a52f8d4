// Package testenv gives integration tests the real tools (restic, age, zstd, sqlite3,
// MinIO) and clean child-process environments. In CI (CI=true or NIGHTJAR_REQUIRE_TOOLS=1)
// a missing tool fails the test; elsewhere it skips with a hint to run `make tools`.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// Required reports whether missing tools must fail tests instead of skipping them.
func Required() bool {
	return os.Getenv("CI") == "true" || os.Getenv("NIGHTJAR_REQUIRE_TOOLS") == "1"
}

// RepoRoot is the repository's top folder (where go.mod is).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Tool returns the path of a tool: from .tools/bin first, then PATH.
func Tool(t testing.TB, name string) string {
	t.Helper()
	local := filepath.Join(RepoRoot(), ".tools", "bin", name)
	if _, err := os.Stat(local); err == nil {
		return local
	}
	p, err := exec.LookPath(name)
	if err != nil {
		if Required() {
			t.Fatalf("tool %s is missing: run `make tools` (CI requires every tool)", name)
		}
		t.Skipf("tool %s is missing: run `make tools`", name)
	}
	return p
}

// Env returns a minimal, explicit environment for a child process: PATH, HOME and a temp
// folder, plus extra ("KEY=value"). Ambient variables (proxies, AWS_*, RESTIC_*) never leak
// into a test's child processes.
func Env(t testing.TB, extra ...string) []string {
	t.Helper()
	home := t.TempDir()
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"TMPDIR=" + os.TempDir(),
		"LANG=C.UTF-8",
		"XDG_CACHE_HOME=" + filepath.Join(home, ".cache"),
	}
	return append(env, extra...)
}

// Command returns an exec.Cmd for a tool with a clean environment.
func Command(t testing.TB, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(Tool(t, name), args...)
	cmd.Env = Env(t)
	return cmd
}
