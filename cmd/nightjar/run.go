package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/nightjar-backup/nightjar/core"
	"github.com/nightjar-backup/nightjar/core/engine"
)

// runReport is `run --json`'s output.
type runReport struct {
	ID       core.SnapshotID `json:"id"`
	Pipeline string          `json:"pipeline"`
	Host     string          `json:"host,omitempty"`
	Started  time.Time       `json:"started"`
	Finished time.Time       `json:"finished"`
	Duration float64         `json:"duration_seconds"`
	Status   string          `json:"status"` // ok, partial, failed
	Error    string          `json:"error,omitempty"`
	// RetentionError is set when the snapshot committed but a sink's retention failed or
	// was held by a guardrail; the run then exits 1.
	RetentionError string          `json:"retention_error,omitempty"`
	Sinks          []sinkReport    `json:"sinks"`
	Artifacts      []core.Artifact `json:"artifacts"` // as stored by blob sinks (raw when none)
}

type sinkReport struct {
	Name      string           `json:"name"`
	Status    string           `json:"status"`             // committed, failed
	Snapshot  core.SnapshotID  `json:"snapshot,omitempty"` // the committed snapshot's id
	Error     string           `json:"error,omitempty"`
	Bytes     int64            `json:"bytes"` // stored bytes
	Duration  float64          `json:"duration_seconds"`
	Artifacts []storedArtifact `json:"artifacts,omitempty"` // what this sink committed
}

// storedArtifact is one artifact as one sink stored it (raw sinks store it untransformed).
type storedArtifact struct {
	Name         string `json:"name"`
	Object       string `json:"object"`
	StoredSize   int64  `json:"stored_size"`
	StoredSHA256 string `json:"stored_sha256"`
	Ref          string `json:"ref,omitempty"`
}

func (a *app) runCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "run -c FILE",
		Short: "Run the pipeline once: one snapshot in every sink",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			cfg, err := a.loadConfig(ctx)
			if err != nil {
				return err
			}
			// Lock, start ping, before hook (runops.go).
			o, err := a.startRun(ctx, cfg)
			if err != nil {
				return err
			}
			defer o.release()
			prog := a.startProgress() // nil unless stderr is a terminal
			b, err := engine.Build(ctx, cfg, a.reg, engine.NewEnv(cfg, a.log, nil), "")
			if err != nil {
				prog.stop()
				o.finish(ctx, report(cfg.Pipeline, nil, err), err)
				return err
			}
			defer b.Close()
			prog.attach(b.Pipeline)
			res, runErr := engine.Run(ctx, b.Pipeline)
			prog.stop()
			rep := report(cfg.Pipeline, res, runErr)
			if !asJSON {
				printReport(a, rep)
			}
			// Retention: each committed sink's policy and guardrails (retention.go). It runs
			// before the outcome is recorded, so a sink that stops being pruned pages someone.
			retErr := a.retainAfterRun(ctx, cfg, b, res, !asJSON)
			outcome := runErr
			if retErr != nil {
				rep.RetentionError = retErr.Error()
				if outcome == nil {
					outcome, rep.Error = retErr, retErr.Error()
				}
			}
			// Metrics, after or on_error hook, success or fail ping (runops.go).
			o.finish(ctx, rep, outcome)
			if asJSON {
				if err := writeJSON(a.stdout, rep); err != nil {
					return err
				}
			}
			if runErr != nil {
				code := exitFailed
				if errors.Is(runErr, core.ErrPartial) {
					code = exitPartial
				}
				fmt.Fprintf(a.stderr, "nightjar: %v\n", runErr)
				return silentError{code: code, err: runErr}
			}
			return retErr
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON run report on stdout")
	return cmd
}

func report(pipeline string, res *engine.Result, runErr error) runReport {
	rep := runReport{Pipeline: pipeline, Status: "ok", Sinks: []sinkReport{}, Artifacts: []core.Artifact{}}
	if runErr != nil {
		rep.Status, rep.Error = "failed", runErr.Error()
		if errors.Is(runErr, core.ErrPartial) {
			rep.Status = "partial"
		}
	}
	if res == nil {
		return rep
	}
	rep.ID, rep.Started, rep.Finished = res.ID, res.Started, res.Finished
	rep.Duration = res.Finished.Sub(res.Started).Seconds()
	if res.Artifacts != nil {
		rep.Artifacts = res.Artifacts
	}
	for _, s := range res.Sinks {
		sr := sinkReport{Name: s.Name, Status: "committed", Bytes: s.Bytes, Duration: s.Duration.Seconds()}
		if !s.Committed {
			sr.Status = "failed"
			if s.Err != nil {
				sr.Error = s.Err.Error()
			}
		}
		if s.Committed && s.Manifest != nil {
			sr.Snapshot = s.Manifest.ID
			rep.Host = s.Manifest.Host
			for _, art := range s.Manifest.Artifacts {
				sr.Artifacts = append(sr.Artifacts, storedArtifact{Name: art.Name, Object: art.Object,
					StoredSize: art.StoredSize, StoredSHA256: art.StoredSHA256, Ref: art.Ref})
			}
		}
		rep.Sinks = append(rep.Sinks, sr)
	}
	return rep
}

func printReport(a *app, rep runReport) {
	w := a.stdout
	if rep.ID == "" {
		fmt.Fprintf(w, "pipeline %s: run failed before a snapshot was started\n", rep.Pipeline)
		return
	}
	fmt.Fprintf(w, "snapshot %s of pipeline %s: %s in %s\n", rep.ID, rep.Pipeline, rep.Status,
		rep.Finished.Sub(rep.Started).Round(time.Millisecond))
	for _, art := range rep.Artifacts {
		fmt.Fprintf(w, "  artifact %-20s %10s raw  %10s stored  sha256 %.16s…\n", art.Name,
			core.HumanBytes(art.Size), core.HumanBytes(art.StoredSize), art.SHA256)
		if n := art.Meta["changed_while_read"]; n != "" {
			fmt.Fprintf(w, "    warning: %s file(s) changed while read:\n      %s\n", n, art.Meta["changed_files"])
		}
	}
	for _, s := range rep.Sinks {
		line := fmt.Sprintf("  sink %-12s %-9s %10s  %.1fs", s.Name, s.Status, core.HumanBytes(s.Bytes), s.Duration)
		if s.Error != "" {
			line += "  error: " + s.Error
		}
		fmt.Fprintln(w, line)
	}
}
