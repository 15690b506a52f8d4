package gfs_test

import (
	"bytes"
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/nightjar-backup/nightjar/core/retention"
	"github.com/nightjar-backup/nightjar/plugins/policy/gfs"
	"github.com/nightjar-backup/nightjar/sdk/policy"
)

// benchInput is 10,000 snapshots, two a day, with the usual nightly policy.
func benchInput(n int) *retention.Input {
	end := time.Date(2026, 11, 22, 2, 0, 0, 0, time.UTC)
	in := &retention.Input{ABI: 1, Now: end.Add(time.Hour), Pipeline: "bench", Sink: "local",
		Params: map[string]any{"keep_last": 3.0, "keep_daily": 14.0, "keep_weekly": 8.0, "keep_monthly": 24.0, "keep_yearly": -1.0, "keep_within": "2d"}}
	for i := 0; i < n; i++ {
		t := end.Add(-time.Duration(i) * 12 * time.Hour)
		in.Snapshots = append(in.Snapshots, retention.Snapshot{ID: fmt.Sprintf("%s-%06x", t.Format("20060102T150405Z"), i),
			Time: t, Size: 1 << 30})
	}
	return in
}

// BenchmarkGFSNative runs the same code natively: decode, decide, encode.
func BenchmarkGFSNative(b *testing.B) {
	raw, err := benchInput(10000).Encode()
	if err != nil {
		b.Fatal(err)
	}
	var out bytes.Buffer
	for b.Loop() {
		out.Reset()
		if err := policy.Eval(bytes.NewReader(raw), &out, gfs.Decide); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGFSWasmCold compiles the module from scratch (empty cache) and evaluates.
func BenchmarkGFSWasmCold(b *testing.B) {
	in := benchInput(10000)
	ctx := context.Background()
	for b.Loop() {
		h, err := retention.NewHost(b.TempDir(), builtins())
		if err != nil {
			b.Fatal(err)
		}
		evalOnce(b, h, in)
		h.Close(ctx)
	}
}

// BenchmarkGFSWasmWarm is what prune does with a warm on-disk cache: a new host, load the
// compiled module from the cache, instantiate, evaluate.
func BenchmarkGFSWasmWarm(b *testing.B) {
	in := benchInput(10000)
	ctx := context.Background()
	dir := b.TempDir()
	h, err := retention.NewHost(dir, builtins())
	if err != nil {
		b.Fatal(err)
	}
	evalOnce(b, h, in) // fills the cache
	h.Close(ctx)
	defer reportCPU(b)()
	for b.Loop() {
		h, err := retention.NewHost(dir, builtins())
		if err != nil {
			b.Fatal(err)
		}
		evalOnce(b, h, in)
		h.Close(ctx)
	}
}

// BenchmarkGFSWasmEvaluate reuses one compiled module: instantiation and the run only.
func BenchmarkGFSWasmEvaluate(b *testing.B) { benchEvaluate(b, builtins()) }

// BenchmarkGFSWasmEvaluateChecked is the same module run as any user's module is, with the
// interruption checks (not registered as a Bounded built-in).
func BenchmarkGFSWasmEvaluateChecked(b *testing.B) { benchEvaluate(b, nil) }

func benchEvaluate(b *testing.B, builtins map[string]retention.Builtin) {
	in := benchInput(10000)
	h, err := retention.NewHost("", builtins)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close(context.Background())
	p, err := h.Compile(context.Background(), gfs.Name, gfs.Module, retention.Limits{})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close(context.Background())
	defer reportCPU(b)()
	for b.Loop() {
		if _, err := p.Evaluate(context.Background(), in); err != nil {
			b.Fatal(err)
		}
	}
}

// reportCPU adds the process's CPU time (user+sys, all threads) per iteration to the
// results as cpu-ms/op: on a shared machine it varies less than the wall time. Call the
// function it returns after the loop.
func reportCPU(b *testing.B) func() {
	start := cpuTime(b)
	return func() { b.ReportMetric(float64(cpuTime(b)-start)/1e6/float64(b.N), "cpu-ms/op") }
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func evalOnce(b *testing.B, h *retention.Host, in *retention.Input) {
	b.Helper()
	p, err := h.Compile(context.Background(), gfs.Name, gfs.Module, retention.Limits{})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close(context.Background())
	out, err := p.Evaluate(context.Background(), in)
	if err != nil {
		b.Fatal(err)
	}
	if len(out.Decisions) != len(in.Snapshots) {
		b.Fatalf("%d decisions", len(out.Decisions))
	}
}
