package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/spf13/viper"
	"github.com/vbauerster/mpb/v8"

	"github.com/nightjar-backup/nightjar/core"
)

// bigFixture has enough data that the progress display redraws while the run reads it.
func bigFixture(t *testing.T) *opsFixture {
	t.Helper()
	f := newOpsFixture(t)
	buf := make([]byte, 24<<20)
	rand.Read(buf)
	if err := os.WriteFile(filepath.Join(f.data, "random.bin"), buf, 0o644); err != nil {
		t.Fatal(err)
	}
	appendConfig(t, f, "sinks:\n"+f.localSink("a"))
	return f
}

func TestProgressShowsOnATerminal(t *testing.T) {
	f := bigFixture(t)
	cmd := opsNightjarCmd(t, []string{"TERM=xterm"}, "run", "-c", f.config)
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 120})
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	var out bytes.Buffer
	_, err = io.Copy(&out, ptmx)
	var pe *os.PathError
	if err != nil && !(errors.As(err, &pe) && errors.Is(pe.Err, syscall.EIO)) { // EIO: the child closed the terminal
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("run on a terminal: %v\n%s", err, out.String())
	}
	screen := out.String()
	// The bar for artifact "data": bytes done of the estimate, the bar, percent and rate.
	bar := regexp.MustCompile(`data\s+\d+(\.\d)? MiB / \d+(\.\d)? MiB \[[=>-]+\]\s+100 %\s+\d+(\.\d)? [KMG]iB/s`)
	if !bar.MatchString(screen) {
		t.Fatalf("no progress bar on the terminal:\n%q", screen)
	}
	if !strings.Contains(screen, "snapshot ") || !strings.Contains(screen, ": ok in ") {
		t.Fatalf("no report after the progress:\n%q", screen)
	}
}

func TestNoProgressWithoutATerminal(t *testing.T) {
	f := bigFixture(t)
	for _, args := range [][]string{{"run", "-c", f.config}, {"--quiet", "run", "-c", f.config}} {
		cmd := opsNightjarCmd(t, nil, args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, stderr.String())
		}
		all := stdout.String() + stderr.String()
		if strings.Contains(all, "\x1b[") || strings.Contains(all, "MiB/s") || strings.Contains(all, "[=") {
			t.Fatalf("%v: progress drawn without a terminal:\n%q", args, all)
		}
	}
}

func TestQuietHidesProgressOnATerminal(t *testing.T) {
	f := bigFixture(t)
	cmd := opsNightjarCmd(t, []string{"TERM=xterm"}, "--quiet", "run", "-c", f.config)
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 120})
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	var out bytes.Buffer
	io.Copy(&out, ptmx)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if strings.Contains(out.String(), "MiB/s") || strings.Contains(out.String(), "[=") {
		t.Fatalf("--quiet still drew progress:\n%q", out.String())
	}
	if !strings.Contains(out.String(), ": ok in ") {
		t.Fatalf("no report:\n%q", out.String())
	}
}

// Mid-run frames on a real terminal: bytes done of the estimate, percentage, rate and ETA,
// redrawn as the count grows; log lines go above the bars, not through them.
func TestProgressRedrawsWithRateAndETA(t *testing.T) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	if err := pty.Setsize(tty, &pty.Winsize{Rows: 40, Cols: 120}); err != nil {
		t.Fatal(err)
	}
	var screen bytes.Buffer
	copied := make(chan struct{})
	go func() { io.Copy(&screen, ptmx); close(copied) }()

	a := &app{v: viper.New(), stdout: tty, stderr: tty}
	a.v.Set("log-level", "info")
	a.v.Set("log-format", "text")
	pr := a.startProgress()
	if pr == nil {
		t.Fatal("no progress on a terminal")
	}
	spec := core.ArtifactSpec{Name: "josh.db", Kind: "sqlite", Filename: "josh.db"}
	var done atomic.Int64
	const total = 64 << 20
	pr.ArtifactStart(spec, total, &done)
	for i := 1; i <= 20; i++ {
		done.Store(int64(i) * total / 40) // half way in about 1.5 s
		time.Sleep(75 * time.Millisecond)
		if i == 10 {
			a.log.Info("a log line while the bar runs")
		}
	}
	done.Store(total)
	pr.ArtifactDone(spec, nil)
	pr.stop()
	tty.Close()
	<-copied

	s := screen.String()
	mid := regexp.MustCompile(`josh\.db\s+\d+\.\d MiB / 64\.0 MiB \[[=>-]+\]\s+(\d+) %\s+\d+(\.\d)? MiB/s\s+(\d+m)?\d+s`)
	var partial bool
	for _, m := range mid.FindAllStringSubmatch(s, -1) {
		if m[1] != "100" {
			partial = true
		}
	}
	if !partial {
		t.Fatalf("no mid-run frame with percent, rate and ETA:\n%q", s)
	}
	if !regexp.MustCompile(`josh\.db\s+64\.0 MiB / 64\.0 MiB \[=+\]\s+100 %`).MatchString(s) {
		t.Fatalf("no final frame:\n%q", s)
	}
	if !strings.Contains(s, "a log line while the bar runs") {
		t.Fatalf("log line lost:\n%q", s)
	}
}

// An estimate is only an estimate: a run that stores less than it (a file shrank or was
// deleted since the walk) or more must still finish its bar, or stop waits forever.
func TestProgressFinishesWhateverTheEstimate(t *testing.T) {
	for _, tc := range []struct {
		name           string
		estimate, done int64
	}{
		{"less than estimated", 1 << 20, 1000},
		{"more than estimated", 1000, 1 << 20},
		{"as estimated", 4096, 4096},
		{"no estimate", -1, 4096},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &progress{p: mpb.New(mpb.WithOutput(io.Discard)), bars: map[string]*artifactBar{}}
			p.out = &switchWriter{w: p.p, fallback: io.Discard}
			spec := core.ArtifactSpec{Name: "data"}
			var done atomic.Int64
			p.ArtifactStart(spec, tc.estimate, &done)
			done.Store(tc.done)
			time.Sleep(2 * pollEvery)
			p.ArtifactDone(spec, nil)
			stopped := make(chan struct{})
			go func() { p.stop(); close(stopped) }()
			select {
			case <-stopped:
			case <-time.After(10 * time.Second):
				t.Fatal("stop still waits for the bar 10 s after the artifact was done")
			}
		})
	}
}
