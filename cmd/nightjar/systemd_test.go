package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nightjar-backup/nightjar/core/testenv"
)

func readUnit(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "configs", "systemd", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The shipped units pass `systemd-analyze verify` as an instance (nightjar@substrate).
func TestSystemdUnitsVerify(t *testing.T) {
	analyze := testenv.Tool(t, "systemd-analyze")
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"nightjar@.service", "nightjar@.timer"} {
		// verify checks that ExecStart's binary exists: point it at this test binary.
		body := strings.ReplaceAll(readUnit(t, name), "/usr/local/bin/nightjar", exe)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(analyze, "verify", "--man=no",
		filepath.Join(dir, "nightjar@substrate.service"), filepath.Join(dir, "nightjar@substrate.timer"))
	cmd.Env = testenv.Env(t, "SYSTEMD_LOG_LEVEL=notice")
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func TestSystemdUnitsAreNightlyAndHardened(t *testing.T) {
	svc, timer := readUnit(t, "nightjar@.service"), readUnit(t, "nightjar@.timer")
	for _, want := range []string{"Type=oneshot", "run --config /etc/nightjar/%i.yaml", "ProtectSystem=strict", "PrivateTmp=true",
		"NoNewPrivileges=true", "StateDirectory=nightjar", "ReadWritePaths="} {
		if !strings.Contains(svc, "\n"+want) && !strings.Contains(svc, want) {
			t.Errorf("service lacks %q", want)
		}
	}
	for _, want := range []string{"\nOnCalendar=", "\nPersistent=true", "\nRandomizedDelaySec=", "\nWantedBy=timers.target"} {
		if !strings.Contains(timer, want) {
			t.Errorf("timer lacks %q", strings.TrimSpace(want))
		}
	}
}
