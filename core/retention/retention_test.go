package retention_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nightjar-backup/nightjar/core"
	"github.com/nightjar-backup/nightjar/core/retention"
	"github.com/nightjar-backup/nightjar/sdk/policy/policytest"
)

// hostileWasm is testdata/hostile built to wasip1 once per test binary.
var hostileWasm []byte

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "nightjar-hostile-")
	if err != nil {
		panic(err)
	}
	out := filepath.Join(dir, "hostile.wasm")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	err = policytest.Build(ctx, ".", "./testdata/hostile", out)
	cancel()
	if err == nil {
		hostileWasm, err = os.ReadFile(out)
	}
	os.RemoveAll(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "build hostile policy:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// memSink is an in-memory core.Sink and core.LeftoverSink for unit tests.
type memSink struct {
	mu        sync.Mutex
	snaps     map[core.SnapshotID]*core.Manifest
	leftovers map[core.SnapshotID]int
	deleted   []core.SnapshotID
}

func newMemSink(ids ...core.SnapshotID) *memSink {
	s := &memSink{snaps: map[core.SnapshotID]*core.Manifest{}, leftovers: map[core.SnapshotID]int{}}
	for _, id := range ids {
		s.snaps[id] = &core.Manifest{Format: core.ManifestFormat, ID: id, Pipeline: "p", Host: "h", Started: id.Time(),
			Finished: id.Time().Add(time.Minute), Artifacts: []core.Artifact{{Name: "a", StoredSize: 100}}}
	}
	return s
}

func (s *memSink) Put(context.Context, core.SnapshotID, string, io.Reader) (core.Stored, error) {
	return core.Stored{}, errors.New("not used")
}
func (s *memSink) Commit(context.Context, *core.Manifest) error { return errors.New("not used") }
func (s *memSink) Open(context.Context, core.SnapshotID, string) (io.ReadCloser, error) {
	return nil, errors.New("not used")
}
func (s *memSink) List(context.Context) ([]*core.Manifest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ms []*core.Manifest
	for _, m := range s.snaps {
		ms = append(ms, m)
	}
	core.SortNewestFirst(ms)
	return ms, nil
}
func (s *memSink) Delete(_ context.Context, id core.SnapshotID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.snaps[id]; !ok {
		return fmt.Errorf("no snapshot %s", id)
	}
	delete(s.snaps, id)
	s.deleted = append(s.deleted, id)
	return nil
}
func (s *memSink) Leftovers(context.Context) ([]core.Leftover, error) {
	var out []core.Leftover
	for id, n := range s.leftovers {
		out = append(out, core.Leftover{ID: id, Objects: n})
	}
	return out, nil
}
func (s *memSink) DeleteLeftover(_ context.Context, id core.SnapshotID) error {
	delete(s.leftovers, id)
	s.deleted = append(s.deleted, id)
	return nil
}

// nightly returns n daily snapshot ids ending at last, oldest first.
func nightly(last time.Time, n int) []core.SnapshotID {
	ids := make([]core.SnapshotID, n)
	for i := range ids {
		t := last.AddDate(0, 0, i-n+1)
		ids[i] = core.SnapshotID(fmt.Sprintf("%s-%06x", t.UTC().Format("20060102T150405Z"), i))
	}
	return ids
}

func newHost(t *testing.T) *retention.Host {
	t.Helper()
	h, err := retention.NewHost(t.TempDir(), map[string]retention.Builtin{"hostile": {Module: hostileWasm}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	return h
}

func compile(t *testing.T, h *retention.Host, lim retention.Limits) *retention.Policy {
	t.Helper()
	p, err := h.Compile(context.Background(), "hostile", hostileWasm, lim)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	return p
}

var last = time.Date(2026, 11, 22, 2, 0, 13, 0, time.UTC)

// TestHostilePoliciesDeleteNothing: whatever a policy does wrong, Prepare fails with an
// error naming the problem, and the sink keeps every snapshot.
func TestHostilePoliciesDeleteNothing(t *testing.T) {
	h := newHost(t)
	pol := compile(t, h, retention.Limits{MemoryMiB: 32, Timeout: 20 * time.Second})
	loop := compile(t, h, retention.Limits{Timeout: 2 * time.Second})
	tests := []struct{ mode, want string }{
		{"loop", "time limit 2s exceeded"},
		{"memhog", "out of memory (limit 32 MiB)"},
		{"garbage", "not valid ABI v1 JSON"},
		{"unknown", `unknown snapshot id "20200101T000000Z-000000"`},
		{"missing", "no decision for snapshot"},
		{"duplicate", "decides twice"},
		{"exit1", "exited with status 1; policy stderr: something went wrong"},
		{"panic", "exited with status 2"},
		{"bigout", "output larger than"},
		{"wrongabi", "abi 2"},
		{"nonsense-mode", "exited with status 3"},
	}
	for _, tc := range tests {
		t.Run(tc.mode, func(t *testing.T) {
			ids := nightly(last, 10)
			sink := newMemSink(ids...)
			pol := pol
			if tc.mode == "loop" {
				pol = loop
			}
			sink.leftovers[core.SnapshotID("20200101T000000Z-abcdef")] = 2
			plan, err := retention.Prepare(context.Background(), retention.Request{
				Pipeline: "p", SinkName: "mem", Sink: sink, Policy: pol, Now: last.Add(time.Hour),
				Settings: retention.Settings{Policy: "hostile", Params: map[string]any{"mode": tc.mode}},
			})
			if err == nil {
				t.Fatalf("mode %s: no error; plan %+v", tc.mode, plan)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "nothing deleted") {
				t.Fatalf("mode %s: error %q; want it to contain %q and say nothing was deleted", tc.mode, err, tc.want)
			}
			if len(sink.snaps) != 10 || len(sink.leftovers) != 1 || len(sink.deleted) != 0 {
				t.Fatalf("mode %s: sink changed: %d snapshots, deleted %v", tc.mode, len(sink.snaps), sink.deleted)
			}
		})
	}
}

// TestSandbox: the module sees no filesystem, no environment and a clock fixed to now.
func TestSandbox(t *testing.T) {
	h := newHost(t)
	out := filepath.Join(t.TempDir(), "probe.wasm")
	if err := policytest.Build(context.Background(), ".", "./testdata/probe", out); err != nil {
		t.Fatal(err)
	}
	wasm, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := h.Compile(context.Background(), "probe", wasm, retention.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer pol.Close(context.Background())
	now := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	got, err := pol.Evaluate(context.Background(), &retention.Input{Now: now, Snapshots: []retention.Snapshot{{ID: "a", Time: now.Add(-time.Hour)}}})
	if err != nil {
		t.Fatal(err)
	}
	want := "fs=false file=false env=0 clock=2031-05-06T07:08:09Z"
	if got.Decisions[0].Reason != want {
		t.Fatalf("sandbox probe: %q, want %q", got.Decisions[0].Reason, want)
	}
}

func prepare(t *testing.T, sink *memSink, mode string, s retention.Settings, justWritten core.SnapshotID, force bool) *retention.Plan {
	t.Helper()
	h := newHost(t)
	s.Params = map[string]any{"mode": mode}
	plan, err := retention.Prepare(context.Background(), retention.Request{
		Pipeline: "p", SinkName: "mem", Sink: sink, Policy: compile(t, h, retention.Limits{}), Settings: s,
		Now: last.Add(time.Hour), JustWritten: justWritten, Force: force,
	})
	if err != nil {
		t.Fatal(err)
	}
	return plan
}

// TestGuardrails: a policy that deletes everything is held without --force; with --force
// the newest and the just-written snapshots still stay.
func TestGuardrails(t *testing.T) {
	ctx := context.Background()
	ids := nightly(last, 10)
	newest, written := ids[9], ids[4]

	t.Run("mass delete is held", func(t *testing.T) {
		sink := newMemSink(ids...)
		plan := prepare(t, sink, "deleteall", retention.Settings{}, written, false)
		if plan.Held == "" || plan.Deletes != 8 {
			t.Fatalf("plan not held: deletes %d held %q", plan.Deletes, plan.Held)
		}
		_, err := retention.Apply(ctx, sink, plan)
		if !errors.Is(err, retention.ErrHeld) || len(sink.deleted) != 0 || len(sink.snaps) != 10 {
			t.Fatalf("held plan: err %v, deleted %v", err, sink.deleted)
		}
	})
	t.Run("forced keeps newest and just written", func(t *testing.T) {
		sink := newMemSink(ids...)
		plan := prepare(t, sink, "deleteall", retention.Settings{}, written, true)
		res, err := retention.Apply(ctx, sink, plan)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Deleted) != 8 || sink.snaps[newest] == nil || sink.snaps[written] == nil || len(sink.snaps) != 2 {
			t.Fatalf("deleted %v; left %d", res.Deleted, len(sink.snaps))
		}
		for _, it := range plan.Items {
			if it.ID == newest && (!it.Guarded || !strings.Contains(it.Reason, "newest")) {
				t.Errorf("newest item: %+v", it)
			}
		}
		// Oldest first, so an interrupted prune leaves the newer history.
		if !sort.SliceIsSorted(res.Deleted, func(i, j int) bool { return res.Deleted[i] < res.Deleted[j] }) {
			t.Errorf("deleted out of order: %v", res.Deleted)
		}
	})
	t.Run("fraction", func(t *testing.T) {
		sink := newMemSink(ids...)
		// 8 of 10 deletes is within 0.8.
		frac := func(f float64) *float64 { return &f }
		plan := prepare(t, sink, "deleteall", retention.Settings{MaxDeleteFraction: frac(0.8)}, written, false)
		if plan.Held != "" {
			t.Fatalf("held at 0.8: %s", plan.Held)
		}
		plan = prepare(t, sink, "deleteall", retention.Settings{MaxDeleteFraction: frac(0.79)}, written, false)
		if plan.Held == "" {
			t.Fatal("not held at 0.79")
		}
		// 0: any delete needs --force.
		sink = newMemSink(ids...)
		plan = prepare(t, sink, "deleteall", retention.Settings{MaxDeleteFraction: frac(0)}, written, false)
		if plan.Held == "" {
			t.Fatal("not held at 0")
		}
	})
	t.Run("one snapshot", func(t *testing.T) {
		sink := newMemSink(newest)
		plan := prepare(t, sink, "deleteall", retention.Settings{}, "", true)
		if _, err := retention.Apply(ctx, sink, plan); err != nil || len(sink.snaps) != 1 {
			t.Fatalf("the only snapshot was deleted: %v", err)
		}
	})
	t.Run("leftovers after grace", func(t *testing.T) {
		sink := newMemSink(ids...)
		old := core.SnapshotID(last.Add(-25*time.Hour).Format("20060102T150405Z") + "-aaaaaa")
		fresh := core.SnapshotID(last.Add(-2*time.Hour).Format("20060102T150405Z") + "-bbbbbb")
		sink.leftovers[old], sink.leftovers[fresh] = 3, 1
		sink.leftovers["not-an-id"] = 1
		plan := prepare(t, sink, "keepall", retention.Settings{Grace: 24 * time.Hour}, "", false)
		if _, err := retention.Apply(ctx, sink, plan); err != nil {
			t.Fatal(err)
		}
		if _, ok := sink.leftovers[old]; ok || len(sink.leftovers) != 2 || len(sink.snaps) != 10 {
			t.Fatalf("leftovers left %v, snapshots %d", sink.leftovers, len(sink.snaps))
		}
	})
}

func TestParseOutput(t *testing.T) {
	in := &retention.Input{Snapshots: []retention.Snapshot{{ID: "a"}, {ID: "b"}}}
	for _, tc := range []struct{ out, want string }{
		{`{"abi":1,"decisions":[{"id":"a","keep":true,"reason":"x"},{"id":"b","keep":false,"reason":"y"}]}`, ""},
		{`{"abi":1,"decisions":[{"id":"a","keep":true,"reason":"x"}]}`, "no decision for snapshot b"},
		{`{"abi":1,"decisions":[{"id":"a","keep":true},{"id":"b","keep":true}]} {}`, "data after"},
		{`{"abi":1,"decisions":[{"id":"a","keep":"yes"},{"id":"b","keep":true}]}`, "not valid"},
		{`{"abi":1,"decisions":[{"id":"a","kep":true},{"id":"b","keep":true}]}`, "unknown field"},
		{``, "not valid"},
	} {
		_, err := retention.ParseOutput([]byte(tc.out), in)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: err %v, want %q", tc.out, err, tc.want)
		}
	}
}

// TestCompilationCache: a second host on the same cache folder reuses the compiled module.
func TestCompilationCache(t *testing.T) {
	dir := t.TempDir()
	for i := 0; i < 2; i++ {
		h, err := retention.NewHost(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		p, err := h.Compile(context.Background(), "hostile", hostileWasm, retention.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		p.Close(context.Background())
		h.Close(context.Background())
	}
	var files int
	filepath.Walk(dir, func(_ string, fi os.FileInfo, _ error) error {
		if fi != nil && !fi.IsDir() {
			files++
		}
		return nil
	})
	if files == 0 {
		t.Fatal("no compiled module in the cache folder")
	}
}

// TestBoundedBuiltin: a Bounded built-in runs without interruption checks, in a cache of its
// own, and its time limit and cancellation still refuse its result; a module is Bounded only
// when its bytes are the built-in's, never by name.
func TestBoundedBuiltin(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	bounded := map[string]retention.Builtin{"hostile": {Module: hostileWasm, Bounded: true}}
	evaluate := func(t *testing.T, h *retention.Host, ctx context.Context, mode string, lim retention.Limits) error {
		t.Helper()
		pol, err := h.Compile(ctx, "hostile", hostileWasm, lim)
		if err != nil {
			t.Fatal(err)
		}
		defer pol.Close(context.Background())
		sink := newMemSink(nightly(last, 10)...)
		_, err = retention.Prepare(ctx, retention.Request{
			Pipeline: "p", SinkName: "mem", Sink: sink, Policy: pol, Now: last.Add(time.Hour),
			Settings: retention.Settings{Policy: "hostile", Params: map[string]any{"mode": mode}},
		})
		if len(sink.deleted) != 0 {
			t.Fatalf("mode %s: deleted %v", mode, sink.deleted)
		}
		return err
	}
	h, err := retention.NewHost(dir, bounded)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(ctx)

	if err := evaluate(t, h, ctx, "keepall", retention.Limits{}); err != nil {
		t.Fatalf("bounded built-in: %v", err)
	}
	err = evaluate(t, h, ctx, "keepall", retention.Limits{Timeout: time.Nanosecond})
	if err == nil || !strings.Contains(err.Error(), "time limit 1ns exceeded") || !strings.Contains(err.Error(), "nothing deleted") {
		t.Fatalf("bounded built-in past its time limit: %v; want the limit named and nothing deleted", err)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if err := evaluate(t, h, canceled, "keepall", retention.Limits{}); err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Fatalf("bounded built-in, canceled: %v", err)
	}
	if err := evaluate(t, h, ctx, "panic", retention.Limits{}); err == nil || !strings.Contains(err.Error(), "exited with status 2") {
		t.Fatalf("bounded built-in that panics: %v", err)
	}
	if fis, err := os.ReadDir(filepath.Join(dir, "bounded")); err != nil || len(fis) == 0 {
		t.Fatalf("no bounded compilation cache in %s: %v", dir, err)
	}

	// The same bytes, not registered as Bounded, in a host on the same cache folder: the
	// module compiled with the checks is used, so an endless loop is stopped.
	checked, err := retention.NewHost(dir, map[string]retention.Builtin{"hostile": {Module: hostileWasm}})
	if err != nil {
		t.Fatal(err)
	}
	defer checked.Close(ctx)
	if err := evaluate(t, checked, ctx, "loop", retention.Limits{Timeout: 200 * time.Millisecond}); err == nil || !strings.Contains(err.Error(), "stopped after") {
		t.Fatalf("checked module from a shared cache folder: %v", err)
	}
	// A Bounded built-in of other bytes under the same name does not make this module Bounded.
	other := append([]byte(nil), hostileWasm...)
	other = append(other, 0, 4, 3, 'x', 'y', 'z') // a custom section "xyz": same code, other bytes
	byName, err := retention.NewHost(dir, map[string]retention.Builtin{"hostile": {Module: other, Bounded: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer byName.Close(ctx)
	if err := evaluate(t, byName, ctx, "loop", retention.Limits{Timeout: 200 * time.Millisecond}); err == nil || !strings.Contains(err.Error(), "stopped after") {
		t.Fatalf("module named like a Bounded built-in: %v", err)
	}
}
