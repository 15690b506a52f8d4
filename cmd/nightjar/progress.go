package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"github.com/nightjar-backup/nightjar/core"
	"github.com/nightjar-backup/nightjar/core/engine"
)

// progress draws one bar per artifact on a terminal: bytes read from the source, rate, and
// percentage and ETA when the source could estimate its size (core.Sizer). It implements
// engine.Observer. While it runs, log lines are printed above the bars instead of through
// them.
type progress struct {
	p    *mpb.Progress
	out  *switchWriter
	mu   sync.Mutex
	bars map[string]*artifactBar
}

type artifactBar struct {
	bar  *mpb.Bar
	done *atomic.Int64
	stop chan struct{}
	wg   sync.WaitGroup
}

// pollEvery is how often a bar reads its artifact's byte counter.
const pollEvery = 100 * time.Millisecond

// startProgress returns a progress display when stderr is a terminal and --quiet is not
// set, else nil. It routes a.log through the display until stop.
func (a *app) startProgress() *progress {
	f, ok := a.stderr.(*os.File)
	if a.v.GetBool("quiet") || !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(a.v.GetString("log-level"))); err != nil {
		return nil
	}
	pr := &progress{
		p:    mpb.New(mpb.WithOutput(f), mpb.WithWidth(32), mpb.WithRefreshRate(150*time.Millisecond)),
		bars: map[string]*artifactBar{},
	}
	pr.out = &switchWriter{w: pr.p, fallback: f}
	if log, err := a.newLogger(pr.out, level); err == nil {
		a.log = log
	}
	return pr
}

// attach makes p observe pipeline (a nil progress observes nothing).
func (p *progress) attach(pl *engine.Pipeline) {
	if p != nil {
		pl.Observer = p
	}
}

func (p *progress) ArtifactStart(spec core.ArtifactSpec, estimate int64, done *atomic.Int64) {
	name := decor.Name(spec.Name, decor.WCSyncSpaceR)
	rate := rateDecorator(time.Now())
	var opts []mpb.BarOption
	if estimate > 0 {
		opts = []mpb.BarOption{
			mpb.PrependDecorators(name, decor.Counters(decor.SizeB1024(0), "% .1f / % .1f")),
			mpb.AppendDecorators(decor.Percentage(decor.WCSyncSpace), rate,
				decor.OnComplete(decor.AverageETA(decor.ET_STYLE_GO, decor.WCSyncSpace), "done")),
		}
	} else {
		estimate = 0 // unknown: the total follows the count
		opts = []mpb.BarOption{
			mpb.PrependDecorators(name, decor.Current(decor.SizeB1024(0), "% .1f")),
			mpb.AppendDecorators(rate),
		}
	}
	// Made with total 0 and given the estimate after: mpb ignores SetTotal on a bar built
	// with a total, and such a bar completes only when the count reaches that total, so a
	// run that stores less than its estimate would leave Wait hanging at the end.
	bar, err := p.p.Add(0, mpb.BarStyle().Build(), opts...)
	if err != nil {
		return
	}
	bar.SetTotal(estimate, false)
	ab := &artifactBar{bar: bar, done: done, stop: make(chan struct{})}
	p.mu.Lock()
	p.bars[spec.Name] = ab
	p.mu.Unlock()
	ab.wg.Add(1)
	go ab.poll(estimate)
}

// rateDecorator shows the average rate since start, also on the final frame. (mpb's
// AverageSpeed only updates while the bar is incomplete, so an artifact that finishes
// before the first refresh would show no rate at all.)
func rateDecorator(start time.Time) decor.Decorator {
	return decor.Any(func(s decor.Statistics) string {
		secs := time.Since(start).Seconds()
		if secs <= 0 {
			return ""
		}
		return fmt.Sprintf("% .1f/s", decor.SizeB1024(float64(s.Current)/secs))
	}, decor.WCSyncSpace)
}

func (ab *artifactBar) poll(total int64) {
	defer ab.wg.Done()
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		select {
		case <-ab.stop:
			return
		case <-t.C:
			cur := ab.done.Load()
			// An estimate is only an estimate: never let the count complete the bar early.
			if cur >= total {
				total = cur + cur/20 + 1
				ab.bar.SetTotal(total, false)
			}
			ab.bar.SetCurrent(cur)
		}
	}
}

func (p *progress) ArtifactDone(spec core.ArtifactSpec, err error) {
	p.mu.Lock()
	ab := p.bars[spec.Name]
	delete(p.bars, spec.Name)
	p.mu.Unlock()
	if ab != nil {
		ab.finish(err)
	}
}

func (ab *artifactBar) finish(err error) {
	close(ab.stop)
	ab.wg.Wait()
	if err != nil {
		ab.bar.Abort(false)
		return
	}
	n := ab.done.Load()
	ab.bar.SetTotal(n, false)
	ab.bar.SetCurrent(n)
	ab.bar.SetTotal(n, true)
}

// stop draws the final state and gives the terminal back to plain logging.
func (p *progress) stop() {
	if p == nil {
		return
	}
	p.mu.Lock()
	for name, ab := range p.bars {
		ab.finish(errors.New("run ended"))
		delete(p.bars, name)
	}
	p.mu.Unlock()
	p.p.Wait()
	p.out.release()
}

// switchWriter writes log lines above the bars while they run, then straight to stderr.
type switchWriter struct {
	mu       sync.Mutex
	w        io.Writer
	fallback io.Writer
	released bool
}

func (s *switchWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.released {
		return s.fallback.Write(b)
	}
	// mpb's Write reuses nothing after it returns, but copy in case a handler reuses b.
	return s.w.Write(append([]byte(nil), b...))
}

func (s *switchWriter) release() {
	s.mu.Lock()
	s.released = true
	s.mu.Unlock()
}

// newLogger makes a logger like setupLogging's (level and format from the flags) that writes
// to w: the progress display while it runs.
func (a *app) newLogger(w io.Writer, level slog.Level) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch f := a.v.GetString("log-format"); f {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("%w: --log-format: expected text or json, got %q", core.ErrUsage, f)
	}
}
