package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nightjar-backup/nightjar/core"
	"github.com/nightjar-backup/nightjar/core/config"
	"github.com/nightjar-backup/nightjar/core/ops"
)

// runOps is what surrounds one run of `nightjar run`: the pipeline's lock, the healthchecks
// pings, the hooks and the metrics textfile.
type runOps struct {
	a       *app
	cfg     *config.Config
	host    string
	lock    *ops.Lock
	ping    *ops.Pinger
	hooks   *ops.Hooks
	started time.Time
}

// startRun takes the pipeline's lock, pings start and runs the before hook. A failing before
// hook aborts the run: nothing is snapshotted, on_error runs, the fail ping is sent, and the
// returned error exits 1. A locked pipeline fails at once and pings nothing (the run that
// holds the lock reports for itself).
func (a *app) startRun(ctx context.Context, cfg *config.Config) (*runOps, error) {
	lock, err := ops.AcquireLock(cfg.StateDir, cfg.Pipeline)
	if err != nil {
		return nil, err
	}
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	o := &runOps{
		a: a, cfg: cfg, host: host, lock: lock, started: time.Now().UTC(),
		ping: ops.NewPinger(cfg.Notify.String("healthchecks_url"), cfg.Notify.Duration("timeout"), a.log),
		hooks: &ops.Hooks{
			Commands: map[string]string{
				ops.HookBefore:  cfg.Hooks.String("before"),
				ops.HookAfter:   cfg.Hooks.String("after"),
				ops.HookOnError: cfg.Hooks.String("on_error"),
			},
			Timeout: cfg.Hooks.Duration("timeout"),
			Output:  a.stderr,
		},
	}
	o.ping.Start(ctx)
	before := &ops.Run{Pipeline: cfg.Pipeline, Config: cfg.File, Host: host, Status: "running", Started: o.started}
	if err := o.hooks.Run(ctx, ops.HookBefore, before); err != nil {
		err = fmt.Errorf("run aborted, nothing was snapshotted: %w", err)
		o.finish(ctx, report(cfg.Pipeline, nil, err), err)
		o.release()
		return nil, err
	}
	return o, nil
}

// finish records the run's outcome: metrics, the after or on_error hook, then the success or
// fail ping. Failures here are logged; they never change the run's exit code.
func (o *runOps) finish(ctx context.Context, rep runReport, runErr error) {
	r := o.summary(rep, runErr)
	log := o.a.log.With("pipeline", o.cfg.Pipeline)
	if path := o.cfg.Metrics.String("textfile"); path != "" {
		if err := ops.WriteMetrics(path, r); err != nil {
			log.Warn("metrics textfile not written", "err", err)
		}
	}
	hook := ops.HookAfter
	if runErr != nil {
		hook = ops.HookOnError
	}
	if err := o.hooks.Run(ctx, hook, r); err != nil {
		log.Warn("hook failed", "hook", hook, "err", err)
	}
	if runErr != nil {
		o.ping.Fail(ctx, r.Summary())
	} else {
		o.ping.Success(ctx, r.Summary())
	}
}

func (o *runOps) summary(rep runReport, runErr error) *ops.Run {
	r := &ops.Run{
		Pipeline: o.cfg.Pipeline, Config: o.cfg.File, Host: o.host, Snapshot: string(rep.ID),
		Status: rep.Status, Error: rep.Error, Started: rep.Started, Finished: rep.Finished, ExitCode: exitOK,
	}
	if runErr != nil {
		r.ExitCode = exitFailed
		if errors.Is(runErr, core.ErrPartial) {
			r.ExitCode = exitPartial
		}
	}
	if r.Started.IsZero() {
		r.Started = o.started
	}
	if r.Finished.IsZero() {
		r.Finished = time.Now().UTC()
	}
	for _, art := range rep.Artifacts {
		r.RawBytes += art.Size
	}
	for _, s := range rep.Sinks {
		r.Sinks = append(r.Sinks, ops.SinkRun{Name: s.Name, Committed: s.Status == "committed", Bytes: s.Bytes,
			Duration: time.Duration(s.Duration * float64(time.Second)), Error: s.Error})
	}
	// A run that failed before its sinks were started failed in every sink.
	if len(r.Sinks) == 0 {
		for _, s := range o.cfg.Sinks {
			r.Sinks = append(r.Sinks, ops.SinkRun{Name: s.Name, Error: "not run"})
		}
	}
	return r
}

// release drops the pipeline's lock.
func (o *runOps) release() {
	if err := o.lock.Release(); err != nil {
		o.a.log.Warn("releasing the pipeline lock", "err", err)
	}
}
