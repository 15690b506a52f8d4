package main

import (
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/nightjar-backup/nightjar/core"
	"github.com/nightjar-backup/nightjar/core/ops"
	"github.com/nightjar-backup/nightjar/core/retention"
)

// pruneReport is `prune --json`'s output.
type pruneReport struct {
	DryRun bool              `json:"dry_run"`
	Plan   *retention.Plan   `json:"plan"`
	Result *retention.Result `json:"result,omitempty"`
	Error  string            `json:"error,omitempty"`
}

func (a *app) pruneCmd() *cobra.Command {
	var sinkName string
	var dryRun, force, asJSON bool
	cmd := &cobra.Command{
		Use:   "prune -c FILE [--sink NAME] [--dry-run] [--force] [--json]",
		Short: "Apply a sink's retention policy: delete the snapshots it does not keep",
		Long: `Runs the sink's retention policy on its complete snapshots, applies the guardrails
(the newest snapshot is always kept; deleting more than max_delete_fraction needs --force)
and deletes what the plan deletes, plus leftovers of incomplete snapshots older than grace.
--dry-run prints the plan with reasons and deletes nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			cfg, b, sink, err := a.openSink(ctx, sinkName, nil)
			if err != nil {
				return err
			}
			defer b.Close()
			sc, err := cfg.Sink(sink.Name)
			if err != nil {
				return err
			}
			if sc.Retention == nil {
				return &core.ConfigError{File: cfg.File, Key: "sinks." + sc.Name + ".retention",
					Msg: "this sink has no retention policy; add e.g. retention: {policy: gfs, params: {keep_daily: 7}}"}
			}
			h, err := newPolicyHost(cfg.StateDir)
			if err != nil {
				return err
			}
			defer h.Close(ctx)
			plan, err := planSink(ctx, h, cfg, sc, sink.Sink, "", force)
			if err != nil {
				return err
			}
			rep := pruneReport{DryRun: dryRun, Plan: plan}
			var applyErr error
			if !dryRun {
				// Never delete while a run of the same pipeline is writing.
				lock, err := ops.AcquireLock(cfg.StateDir, cfg.Pipeline)
				if err != nil {
					return err
				}
				defer lock.Release()
				rep.Result, applyErr = retention.Apply(ctx, sink.Sink, plan)
				if applyErr != nil {
					rep.Error = applyErr.Error()
				}
			}
			if asJSON {
				if err := writeJSON(a.stdout, rep); err != nil {
					return err
				}
			} else {
				printPlan(a, rep)
			}
			if applyErr != nil {
				if asJSON || errors.Is(applyErr, retention.ErrHeld) {
					fmt.Fprintf(a.stderr, "nightjar: %v\n", applyErr)
				}
				return silentError{code: exitFailed, err: applyErr}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&sinkName, "sink", "", "sink name (default: the first sink)")
	f.BoolVar(&dryRun, "dry-run", false, "print the plan with reasons; delete nothing")
	f.BoolVar(&force, "force", false, "allow deleting more than the sink's max_delete_fraction")
	f.BoolVar(&asJSON, "json", false, "print the plan (and what was deleted) as JSON")
	return cmd
}

func printPlan(a *app, rep pruneReport) {
	p := rep.Plan
	mode := ""
	if rep.DryRun {
		mode = " (dry run: nothing is deleted)"
	}
	fmt.Fprintf(a.stdout, "sink %q, policy %s: %d snapshots, keep %d, delete %d%s\n",
		p.Sink, p.Policy, p.Total, p.Total-p.Deletes, p.Deletes, mode)
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	for _, it := range p.Items {
		action := "keep"
		if !it.Keep {
			action = "delete"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", action, it.ID, it.Time.Format("2006-01-02 15:04:05Z07:00"), core.HumanBytes(it.Size), it.Reason)
	}
	for _, l := range p.Leftovers {
		action := "keep"
		if l.Delete {
			action = "delete"
		}
		fmt.Fprintf(tw, "  %s\t%s\tincomplete, %d objects\t\t%s\n", action, l.ID, l.Objects, l.Reason)
	}
	_ = tw.Flush()
	if p.Held != "" {
		fmt.Fprintf(a.stdout, "held: %s\n", p.Held)
	}
	if r := rep.Result; r != nil {
		fmt.Fprintf(a.stdout, "deleted %d snapshots and %d leftovers\n", len(r.Deleted), len(r.LeftoversDeleted))
	}
}
