package testenv

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// MinIO is a real MinIO server on 127.0.0.1 for one test.
type MinIO struct {
	Endpoint  string // host:port
	AccessKey string
	SecretKey string
	Dir       string
	cmd       *exec.Cmd
}

// FreePort returns a free TCP port on 127.0.0.1.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// StartMinIO starts MinIO with a temp data folder, an explicit loopback console address and
// a clean environment; it is stopped when the test ends.
func StartMinIO(t testing.TB) *MinIO {
	t.Helper()
	bin := Tool(t, "minio")
	m := &MinIO{AccessKey: "nightjar-test", SecretKey: "nightjar-test-secret-0123", Dir: filepath.Join(t.TempDir(), "minio")}
	port, console := FreePort(t), FreePort(t)
	m.Endpoint = fmt.Sprintf("127.0.0.1:%d", port)
	var out bytes.Buffer
	m.cmd = exec.Command(bin, "server", m.Dir, "--quiet",
		"--address", m.Endpoint, "--console-address", fmt.Sprintf("127.0.0.1:%d", console))
	m.cmd.Env = Env(t, "MINIO_ROOT_USER="+m.AccessKey, "MINIO_ROOT_PASSWORD="+m.SecretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CI_CD=1")
	m.cmd.Stdout, m.cmd.Stderr = &out, &out
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("start minio: %v", err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
		_ = m.cmd.Wait()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	url := "http://" + m.Endpoint + "/minio/health/ready"
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil}}).Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return m
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("minio did not become ready on %s: %s", m.Endpoint, out.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
