package retention

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nightjar-backup/nightjar/core"
)

// Settings are one sink's retention settings (the config's retention block).
type Settings struct {
	Policy            string         // built-in name or .wasm path, for messages
	Params            map[string]any // passed to the policy
	MaxDeleteFraction *float64       // deleting more than this fraction needs Force; nil: 0.5; 0: any delete needs Force
	Grace             time.Duration  // leftovers older than this are removed; default 24h
}

// Defaults of Settings.
const (
	DefaultMaxDeleteFraction = 0.5
	DefaultGrace             = 24 * time.Hour
)

// Item is one snapshot in a plan.
type Item struct {
	ID     core.SnapshotID `json:"id"`
	Time   time.Time       `json:"time"`
	Size   int64           `json:"size"`
	Keep   bool            `json:"keep"`
	Reason string          `json:"reason"`
	// Guarded is set when a guardrail kept a snapshot the policy wanted to delete.
	Guarded bool `json:"guarded,omitempty"`
}

// LeftoverItem is an incomplete snapshot found in the sink.
type LeftoverItem struct {
	ID      core.SnapshotID `json:"id"`
	Objects int             `json:"objects"`
	Delete  bool            `json:"delete"`
	Reason  string          `json:"reason"`
}

// Plan is what a prune of one sink will do.
type Plan struct {
	Sink      string         `json:"sink"`
	Policy    string         `json:"policy"`
	Now       time.Time      `json:"now"`
	Items     []Item         `json:"snapshots"` // newest first
	Leftovers []LeftoverItem `json:"leftovers"`
	Total     int            `json:"total"`
	Deletes   int            `json:"deletes"`
	MaxDelete float64        `json:"max_delete_fraction"`
	// Held is set when the plan deletes more than MaxDelete of the snapshots and was not
	// forced: nothing is deleted.
	Held string `json:"held,omitempty"`
}

// ErrHeld is returned by Apply when the guardrails hold a plan (it needs --force).
var ErrHeld = errors.New("held by the guardrails")

// Request is what Prepare needs for one sink.
type Request struct {
	Pipeline    string
	SinkName    string
	Sink        core.Sink
	Policy      *Policy
	Settings    Settings
	Now         time.Time
	JustWritten core.SnapshotID // kept whatever the policy says; "" when not after a run
	Force       bool            // allow deleting more than MaxDeleteFraction
}

// Prepare lists the sink, asks the policy and applies the guardrails. It deletes nothing.
// Any policy failure is returned as an error.
func Prepare(ctx context.Context, r Request) (*Plan, error) {
	ms, err := r.Sink.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("sink %q: list: %w", r.SinkName, err)
	}
	core.SortNewestFirst(ms)
	in := &Input{ABI: ABI, Now: r.Now.UTC(), Pipeline: r.Pipeline, Sink: r.SinkName, Params: r.Settings.Params}
	for _, m := range ms {
		in.Snapshots = append(in.Snapshots, SnapshotOf(m))
	}
	var out *Output
	if len(ms) > 0 {
		if out, err = r.Policy.Evaluate(ctx, in); err != nil {
			return nil, fmt.Errorf("sink %q: %w; nothing deleted", r.SinkName, err)
		}
	} else {
		out = &Output{ABI: ABI}
	}
	frac := DefaultMaxDeleteFraction
	if r.Settings.MaxDeleteFraction != nil {
		frac = *r.Settings.MaxDeleteFraction
	}
	plan := Guard(in, out, r.JustWritten, frac, r.Force)
	plan.Sink, plan.Policy = r.SinkName, r.Settings.Policy
	if ls, ok := r.Sink.(core.LeftoverSink); ok {
		left, err := ls.Leftovers(ctx)
		if err != nil {
			return nil, fmt.Errorf("sink %q: list leftovers: %w", r.SinkName, err)
		}
		plan.Leftovers = planLeftovers(left, r.Now, r.Settings.Grace, r.JustWritten)
	}
	return plan, nil
}

// SnapshotOf is a manifest as a policy sees it: its start time (UTC), stored size and tags.
// Labels are empty for now (reserved for per-snapshot metadata; every byte of input is
// parsed by the policy, so nothing is sent that no policy uses).
func SnapshotOf(m *core.Manifest) Snapshot {
	t := m.Started
	if t.IsZero() {
		t = m.ID.Time()
	}
	return Snapshot{ID: string(m.ID), Time: t.UTC(), Size: m.TotalSize(), Tags: m.Tags}
}

// Guard turns a policy's decisions into a plan, applying the guardrails: the newest
// snapshot and justWritten are kept, and a plan that deletes more than maxFraction of the
// snapshots is held unless force. A maxFraction outside [0, 1] means the default.
func Guard(in *Input, out *Output, justWritten core.SnapshotID, maxFraction float64, force bool) *Plan {
	if maxFraction < 0 || maxFraction > 1 {
		maxFraction = DefaultMaxDeleteFraction
	}
	byID := make(map[string]Decision, len(out.Decisions))
	for _, d := range out.Decisions {
		byID[d.ID] = d
	}
	plan := &Plan{Now: in.Now, Total: len(in.Snapshots), MaxDelete: maxFraction, Items: []Item{}, Leftovers: []LeftoverItem{}}
	newest, newestTime := "", time.Time{}
	for _, s := range in.Snapshots {
		if newest == "" || s.Time.After(newestTime) {
			newest, newestTime = s.ID, s.Time
		}
	}
	for _, s := range in.Snapshots {
		d := byID[s.ID]
		it := Item{ID: core.SnapshotID(s.ID), Time: s.Time, Size: s.Size, Keep: d.Keep, Reason: d.Reason}
		var guard string
		switch {
		case s.ID == newest:
			guard = "guardrail: newest complete snapshot"
		case justWritten != "" && s.ID == string(justWritten):
			guard = "guardrail: just written"
		}
		if guard != "" && !it.Keep {
			it.Keep, it.Guarded = true, true
			it.Reason = guard + " (policy: " + d.Reason + ")"
		}
		if !it.Keep {
			plan.Deletes++
		}
		plan.Items = append(plan.Items, it)
	}
	if plan.Total > 0 && float64(plan.Deletes) > maxFraction*float64(plan.Total) && !force {
		plan.Held = fmt.Sprintf("the plan deletes %d of %d snapshots (%.0f%%), more than max_delete_fraction %.2g allows; check the policy, then prune with --force",
			plan.Deletes, plan.Total, 100*float64(plan.Deletes)/float64(plan.Total), maxFraction)
	}
	return plan
}

func planLeftovers(left []core.Leftover, now time.Time, grace time.Duration, justWritten core.SnapshotID) []LeftoverItem {
	if grace <= 0 {
		grace = DefaultGrace
	}
	out := []LeftoverItem{}
	for _, l := range left {
		it := LeftoverItem{ID: l.ID, Objects: l.Objects}
		_, err := core.ParseSnapshotID(string(l.ID))
		switch {
		case err != nil:
			it.Reason = "kept: not a nightjar snapshot id, so its age is unknown"
		case l.ID == justWritten:
			it.Reason = "kept: the snapshot being written"
		case now.Sub(l.ID.Time()) <= grace:
			it.Reason = fmt.Sprintf("kept: incomplete, started %s ago, within grace %s (may still be running)",
				now.Sub(l.ID.Time()).Round(time.Second), core.FormatDuration(grace))
		default:
			it.Delete = true
			it.Reason = fmt.Sprintf("incomplete snapshot started %s ago, older than grace %s",
				now.Sub(l.ID.Time()).Round(time.Minute), core.FormatDuration(grace))
		}
		out = append(out, it)
	}
	return out
}

// Result is what Apply did.
type Result struct {
	Deleted          []core.SnapshotID `json:"deleted"`
	LeftoversDeleted []core.SnapshotID `json:"leftovers_deleted"`
}

// Apply carries out a plan: it deletes the snapshots the plan deletes (oldest first) and
// the expired leftovers. A held plan deletes nothing and returns ErrHeld. It keeps going
// after a failed delete and returns every error.
func Apply(ctx context.Context, sink core.Sink, p *Plan) (*Result, error) {
	res := &Result{Deleted: []core.SnapshotID{}, LeftoversDeleted: []core.SnapshotID{}}
	if p.Held != "" {
		return res, fmt.Errorf("sink %q: %w: %s; nothing deleted", p.Sink, ErrHeld, p.Held)
	}
	var errs []error
	for i := len(p.Items) - 1; i >= 0; i-- {
		it := p.Items[i]
		if it.Keep {
			continue
		}
		if err := sink.Delete(ctx, it.ID); err != nil {
			errs = append(errs, fmt.Errorf("sink %q: delete %s: %w", p.Sink, it.ID, err))
			continue
		}
		res.Deleted = append(res.Deleted, it.ID)
	}
	if ls, ok := sink.(core.LeftoverSink); ok {
		for _, l := range p.Leftovers {
			if !l.Delete {
				continue
			}
			if err := ls.DeleteLeftover(ctx, l.ID); err != nil {
				errs = append(errs, fmt.Errorf("sink %q: delete leftover %s: %w", p.Sink, l.ID, err))
				continue
			}
			res.LeftoversDeleted = append(res.LeftoversDeleted, l.ID)
		}
	}
	return res, errors.Join(errs...)
}
