package main

import (
	"strings"
	"testing"
	"time"

	"github.com/nightjar-backup/nightjar/sdk/policy"
)

func TestDecide(t *testing.T) {
	now := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC) // a Sunday
	var snaps []policy.Snapshot
	for i := 0; i < 120; i++ {
		ts := now.AddDate(0, 0, -i).Add(-time.Hour)
		snaps = append(snaps, policy.Snapshot{ID: ts.Format("20060102"), Time: ts})
	}
	ds, err := decide(&policy.Input{ABI: 1, Now: now, Snapshots: snaps,
		Params: map[string]any{"weekdays": []any{"sun", "Wednesday"}, "keep_days": 7.0, "max_age_days": 90.0}})
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range ds {
		ts := snaps[i].Time
		age := now.Sub(ts)
		want := age < 7*24*time.Hour || ((ts.Weekday() == time.Sunday || ts.Weekday() == time.Wednesday) && age < 90*24*time.Hour)
		if d.ID != snaps[i].ID || d.Keep != want || d.Reason == "" {
			t.Fatalf("%s (%s, %v old): keep %v (%s), want %v", d.ID, ts.Weekday(), age, d.Keep, d.Reason, want)
		}
	}
	if _, err := decide(&policy.Input{Params: map[string]any{"weekdays": []any{"Caturday"}}}); err == nil || !strings.Contains(err.Error(), "Caturday") {
		t.Fatalf("bad weekday: %v", err)
	}
}
