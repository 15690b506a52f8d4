package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/nightjar-backup/nightjar/core"
	"github.com/nightjar-backup/nightjar/core/config"
	"github.com/nightjar-backup/nightjar/core/engine"
	"github.com/nightjar-backup/nightjar/core/retention"
	"github.com/nightjar-backup/nightjar/plugins/policy/gfs"
)

// builtinPolicies are the policies embedded in the binary, by name.
func builtinPolicies() map[string]retention.Builtin {
	return map[string]retention.Builtin{gfs.Name: gfs.Builtin()}
}

// newPolicyHost returns a policy host whose compilation cache is in stateDir.
func newPolicyHost(stateDir string) (*retention.Host, error) {
	cache := ""
	if stateDir != "" {
		cache = filepath.Join(stateDir, "policy-cache")
	}
	return retention.NewHost(cache, builtinPolicies())
}

func retentionLimits(r *config.Retention) retention.Limits {
	return retention.Limits{MemoryMiB: r.MemoryLimitMiB(), Timeout: r.Timeout()}
}

func retentionSettings(r *config.Retention) retention.Settings {
	frac := r.MaxDeleteFraction()
	return retention.Settings{Policy: r.Policy(), Params: r.Params(), MaxDeleteFraction: &frac, Grace: r.Grace()}
}

// planSink compiles a sink's policy and prepares its plan (nothing is deleted).
func planSink(ctx context.Context, h *retention.Host, cfg *config.Config, sc *config.Sink, sink core.Sink,
	justWritten core.SnapshotID, force bool) (*retention.Plan, error) {
	name, wasm, err := h.Resolve(sc.Retention.Policy(), filepath.Dir(cfg.File))
	if err != nil {
		return nil, &core.ConfigError{File: cfg.File, Key: "sinks." + sc.Name + ".retention.policy", Msg: err.Error()}
	}
	pol, err := h.Compile(ctx, name, wasm, retentionLimits(sc.Retention))
	if err != nil {
		return nil, fmt.Errorf("sink %q: %w; nothing deleted", sc.Name, err)
	}
	defer pol.Close(ctx)
	return retention.Prepare(ctx, retention.Request{
		Pipeline: cfg.Pipeline, SinkName: sc.Name, Sink: sink, Policy: pol, Settings: retentionSettings(sc.Retention),
		Now: time.Now().UTC(), JustWritten: justWritten, Force: force,
	})
}

// retainAfterRun applies each committed sink's retention after a run. A failed or held
// policy deletes nothing in that sink; its error is returned (the run exits 1) so that a
// sink that stops being pruned is noticed.
func (a *app) retainAfterRun(ctx context.Context, cfg *config.Config, b *engine.Built, res *engine.Result, print bool) error {
	if res == nil {
		return nil
	}
	sinks := map[string]core.Sink{}
	for _, s := range b.Pipeline.Sinks {
		sinks[s.Name] = s.Sink
	}
	var h *retention.Host
	var errs []error
	for _, sr := range res.Sinks {
		sc, err := cfg.Sink(sr.Name)
		if !sr.Committed || err != nil || sc.Retention == nil {
			continue
		}
		if h == nil {
			if h, err = newPolicyHost(cfg.StateDir); err != nil {
				return err
			}
			defer h.Close(ctx)
		}
		plan, err := planSink(ctx, h, cfg, sc, sinks[sr.Name], res.ID, false)
		if err == nil {
			var done *retention.Result
			done, err = retention.Apply(ctx, sinks[sr.Name], plan)
			if done != nil {
				a.log.Info("retention applied", "sink", sr.Name, "policy", plan.Policy, "snapshots", plan.Total,
					"deleted", len(done.Deleted), "leftovers_deleted", len(done.LeftoversDeleted))
				if print {
					fmt.Fprintf(a.stdout, "  retention %-8s %s: %d snapshots, %d deleted, %d leftovers removed\n",
						sr.Name, plan.Policy, plan.Total, len(done.Deleted), len(done.LeftoversDeleted))
				}
			}
		}
		if err != nil {
			a.log.Error("retention failed", "sink", sr.Name, "err", err)
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("snapshot %s committed, but retention failed: %w", res.ID, errors.Join(errs...))
	}
	return nil
}
