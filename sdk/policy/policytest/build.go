// Package policytest builds Go retention policies to WebAssembly, reproducibly, for tests
// and for `make policy`. It imports nothing from nightjar's core.
package policytest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Flags are the fixed `go build` flags of a policy module: no paths, no build id, no VCS
// stamp, so the same source and Go version give the same bytes.
var Flags = []string{"-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid="}

// Build compiles the main package pkg (a path relative to dir, e.g. "./wasm") to out as a
// wasip1 module. The go command gets an explicit environment: no proxy, no network (modules
// come from the local cache), the local toolchain.
func Build(ctx context.Context, dir, pkg, out string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("build policy %s: %w", pkg, err)
	}
	env, err := buildEnv(ctx, goBin)
	if err != nil {
		return fmt.Errorf("build policy %s: %w", pkg, err)
	}
	args := append([]string{"build"}, Flags...)
	args = append(args, "-o", out, pkg)
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir, cmd.Env = dir, env
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build policy %s in %s: %w\n%s", pkg, dir, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

func buildEnv(ctx context.Context, goBin string) ([]string, error) {
	cmd := exec.CommandContext(ctx, goBin, "env", "GOCACHE", "GOMODCACHE", "GOROOT")
	b, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go env: %w", err)
	}
	v := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(v) != 3 {
		return nil, fmt.Errorf("go env: unexpected output %q", b)
	}
	home, _ := os.UserHomeDir()
	return []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + home,
		"GOCACHE=" + v[0], "GOMODCACHE=" + v[1], "GOROOT=" + v[2],
		"GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0",
		"GOFLAGS=", "GOPROXY=off", "GOTOOLCHAIN=local", "GOWORK=off",
	}, nil
}
