package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nightjar-backup/nightjar/core"
	"github.com/nightjar-backup/nightjar/core/config"
	"github.com/nightjar-backup/nightjar/core/retention"
)

func (a *app) policyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Tools for retention policy authors",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(a.policyTestCmd())
	return cmd
}

type policyTestFlags struct {
	snapshots, params, now string
	simulate, every        string
	memoryMiB              int
	timeout                time.Duration
	asJSON                 bool
}

func (a *app) policyTestCmd() *cobra.Command {
	var fl policyTestFlags
	cmd := &cobra.Command{
		Use:   "test POLICY --snapshots FILE [--params JSON] [--now RFC3339]",
		Short: "Run a policy (a .wasm path or a built-in name) on a snapshot list and print its ABI output",
		Long: `Runs a retention policy exactly as prune does (same sandbox and limits, no guardrails)
and prints its ABI v1 output. POLICY is a built-in name (gfs) or a .wasm path.

--snapshots FILE is a JSON array of snapshots ({id, time, size, tags, labels}; the output
of "nightjar snapshots --json" and of "restic snapshots --json" work too), or a whole ABI
input document.

--simulate DURATION --every INTERVAL runs the pipeline in fast-forward: from --now, a new
snapshot every INTERVAL for DURATION, each followed by the policy and the guardrails, and
prints the snapshots that remain at the end (--snapshots is then optional: the starting set).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.policyTest(cmd.Context(), args[0], fl)
		},
	}
	f := cmd.Flags()
	f.StringVar(&fl.snapshots, "snapshots", "", "JSON file with the snapshot list (or a whole ABI input)")
	f.StringVar(&fl.params, "params", "", `policy params as a JSON object, e.g. '{"keep_daily":7}'`)
	f.StringVar(&fl.now, "now", "", "the evaluation time, RFC 3339 (default: now)")
	f.StringVar(&fl.simulate, "simulate", "", "simulate this long a period of runs, e.g. 400d")
	f.StringVar(&fl.every, "every", "24h", "with --simulate: the interval between runs")
	f.IntVar(&fl.memoryMiB, "memory-limit-mib", retention.DefaultMemoryMiB, "memory limit of the policy")
	f.DurationVar(&fl.timeout, "timeout", retention.DefaultTimeout, "time limit of one evaluation")
	f.BoolVar(&fl.asJSON, "json", false, "with --simulate: print the remaining snapshots as JSON")
	return cmd
}

func (a *app) policyTest(ctx context.Context, policyArg string, fl policyTestFlags) error {
	in := &retention.Input{ABI: retention.ABI, Pipeline: "test", Sink: "test", Params: map[string]any{}}
	if fl.snapshots != "" {
		if err := readSnapshotsFile(fl.snapshots, in); err != nil {
			return err
		}
	} else if fl.simulate == "" {
		return fmt.Errorf("%w: --snapshots FILE is required (or use --simulate)", core.ErrUsage)
	}
	if fl.params != "" {
		var p map[string]any
		if err := json.Unmarshal([]byte(fl.params), &p); err != nil {
			return fmt.Errorf("%w: --params: expected a JSON object such as '{\"keep_daily\":7}': %v", core.ErrUsage, err)
		}
		in.Params = p
	}
	switch {
	case fl.now != "":
		t, err := time.Parse(time.RFC3339Nano, fl.now)
		if err != nil {
			return fmt.Errorf("%w: --now: expected an RFC 3339 time such as 2026-11-22T02:00:00Z, got %q", core.ErrUsage, fl.now)
		}
		in.Now = t
	case in.Now.IsZero():
		in.Now = time.Now().UTC()
	}
	h, err := newPolicyHost(policyCacheDir())
	if err != nil {
		return err
	}
	defer h.Close(ctx)
	name, wasm, err := h.Resolve(policyArg, "")
	if err != nil {
		return fmt.Errorf("%w: %v", core.ErrUsage, err)
	}
	pol, err := h.Compile(ctx, name, wasm, retention.Limits{MemoryMiB: fl.memoryMiB, Timeout: fl.timeout})
	if err != nil {
		return err
	}
	defer pol.Close(ctx)
	if fl.simulate != "" {
		return a.simulate(ctx, pol, in, fl)
	}
	out, err := pol.Evaluate(ctx, in)
	if err != nil {
		return err
	}
	if out.Decisions == nil {
		out.Decisions = []retention.Decision{}
	}
	return writeJSON(a.stdout, out)
}

// policyCacheDir is where `policy test` caches compiled modules: the default state dir when
// it is writable, else memory only.
func policyCacheDir() string {
	dir := config.DefaultStateDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return ""
	}
	return dir
}

// readSnapshotsFile reads a snapshot list: a JSON array of snapshots (ABI, nightjar
// manifests or restic snapshots), or a whole ABI input document.
func readSnapshotsFile(file string, in *retention.Input) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("%w: --snapshots: %v", core.ErrUsage, err)
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		var doc struct {
			Now       *time.Time        `json:"now"`
			Pipeline  string            `json:"pipeline"`
			Sink      string            `json:"sink"`
			Params    map[string]any    `json:"params"`
			Snapshots []json.RawMessage `json:"snapshots"`
		}
		if err2 := json.Unmarshal(b, &doc); err2 != nil || doc.Snapshots == nil {
			return fmt.Errorf("%w: --snapshots %s: expected a JSON array of snapshots or an ABI input object with \"snapshots\": %v", core.ErrUsage, file, err)
		}
		raw = doc.Snapshots
		if doc.Now != nil {
			in.Now = *doc.Now
		}
		if doc.Pipeline != "" {
			in.Pipeline = doc.Pipeline
		}
		if doc.Sink != "" {
			in.Sink = doc.Sink
		}
		if doc.Params != nil {
			in.Params = doc.Params
		}
	}
	for i, r := range raw {
		var s struct {
			retention.Snapshot
			Started   *time.Time      `json:"started"`
			Artifacts []core.Artifact `json:"artifacts"`
			Hostname  string          `json:"hostname"`
			Host      string          `json:"host"`
		}
		if err := json.Unmarshal(r, &s); err != nil {
			return fmt.Errorf("%w: --snapshots %s: [%d]: %v", core.ErrUsage, file, i, err)
		}
		snap := s.Snapshot
		if snap.Time.IsZero() && s.Started != nil {
			snap.Time = *s.Started
		}
		for _, art := range s.Artifacts {
			snap.Size += art.StoredSize
		}
		if host := s.Host + s.Hostname; host != "" && snap.Labels == nil {
			snap.Labels = map[string]string{"host": host}
		}
		if snap.ID == "" || snap.Time.IsZero() {
			return fmt.Errorf("%w: --snapshots %s: [%d]: every snapshot needs an id and a time", core.ErrUsage, file, i)
		}
		in.Snapshots = append(in.Snapshots, snap)
	}
	return nil
}

// simReport is `policy test --simulate --json`'s output.
type simReport struct {
	Runs    int               `json:"runs"`
	Deleted int               `json:"deleted"`
	Held    int               `json:"held"`
	From    time.Time         `json:"from"`
	To      time.Time         `json:"to"`
	Remain  []retention.Item  `json:"remain"`
	Last    *retention.Output `json:"-"`
}

// simulate runs a policy after every run of a fast-forwarded schedule, applying the
// guardrails (without --force) and deleting what the plan deletes.
func (a *app) simulate(ctx context.Context, pol *retention.Policy, in *retention.Input, fl policyTestFlags) error {
	period, err := core.ParseDuration(fl.simulate)
	if err != nil || period <= 0 {
		return fmt.Errorf("%w: --simulate: expected a duration such as 400d", core.ErrUsage)
	}
	every, err := core.ParseDuration(fl.every)
	if err != nil || every <= 0 {
		return fmt.Errorf("%w: --every: expected an interval such as 24h or 1d", core.ErrUsage)
	}
	runs := int(period / every)
	if runs > 100000 {
		return fmt.Errorf("%w: --simulate %s --every %s is %d runs; at most 100000", core.ErrUsage, fl.simulate, fl.every, runs)
	}
	snaps := append([]retention.Snapshot(nil), in.Snapshots...)
	rep := simReport{Runs: runs, From: in.Now.UTC()}
	var last *retention.Plan
	for k := 0; k < runs; k++ {
		t := in.Now.UTC().Add(time.Duration(k) * every)
		id := core.SnapshotID(fmt.Sprintf("%s-%06x", t.Format("20060102T150405Z"), k&0xffffff))
		snaps = append(snaps, retention.Snapshot{ID: string(id), Time: t, Size: 1, Labels: map[string]string{"host": "simulated"}})
		step := *in
		step.Now = t.Add(time.Minute)
		step.Snapshots = snaps
		out, err := pol.Evaluate(ctx, &step)
		if err != nil {
			return fmt.Errorf("simulated run %d at %s: %w", k+1, t.Format(time.RFC3339), err)
		}
		plan := retention.Guard(&step, out, id, retention.DefaultMaxDeleteFraction, false)
		last = plan
		if plan.Held != "" {
			rep.Held++
			continue
		}
		keep := make(map[string]bool, len(plan.Items))
		for _, it := range plan.Items {
			keep[string(it.ID)] = it.Keep
		}
		kept := snaps[:0]
		for _, s := range snaps {
			if keep[s.ID] {
				kept = append(kept, s)
			} else {
				rep.Deleted++
			}
		}
		snaps = kept
		rep.To = t
	}
	rep.Remain = []retention.Item{}
	if last != nil {
		present := map[string]bool{}
		for _, s := range snaps {
			present[s.ID] = true
		}
		for _, it := range last.Items {
			if present[string(it.ID)] {
				rep.Remain = append(rep.Remain, it)
			}
		}
	}
	sort.SliceStable(rep.Remain, func(i, j int) bool { return rep.Remain[i].Time.After(rep.Remain[j].Time) })
	if fl.asJSON {
		return writeJSON(a.stdout, rep)
	}
	fmt.Fprintf(a.stdout, "simulated %d runs every %s from %s to %s: %d snapshots deleted, %d remain\n",
		rep.Runs, core.FormatDuration(every), rep.From.Format(time.RFC3339), rep.To.Format(time.RFC3339), rep.Deleted, len(rep.Remain))
	if rep.Held > 0 {
		fmt.Fprintf(a.stdout, "the guardrails held %d runs' plans (they deleted more than max_delete_fraction; a real prune would need --force)\n", rep.Held)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	for _, it := range rep.Remain {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", it.ID, it.Time.Format("2006-01-02 15:04 Mon"), it.Reason)
	}
	return tw.Flush()
}
