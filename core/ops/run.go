package ops

import (
	"fmt"
	"strings"
	"time"
)

// Status values of a run, as reported by `run --json`, hooks and metrics.
const (
	StatusOK      = "ok"
	StatusPartial = "partial" // some sinks committed, others failed (exit 3)
	StatusFailed  = "failed"
)

// Run summarises one run for pings, metrics and hooks.
type Run struct {
	Pipeline string
	Config   string // the config file
	Host     string
	Snapshot string // "" when the run failed before a snapshot id was made
	Status   string
	Error    string
	ExitCode int
	Started  time.Time
	Finished time.Time
	RawBytes int64 // raw bytes of every artifact
	Sinks    []SinkRun
}

// SinkRun is one sink's part of a run.
type SinkRun struct {
	Name      string
	Committed bool
	Bytes     int64 // stored bytes
	Duration  time.Duration
	Error     string
}

// Summary is a short human-readable account of the run, for a ping body or a log. It holds
// no secret: errors come from sinks, which never put credentials in them.
func (r *Run) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "nightjar pipeline %s on %s: %s", r.Pipeline, r.Host, r.Status)
	if r.Snapshot != "" {
		fmt.Fprintf(&b, ", snapshot %s", r.Snapshot)
	}
	if !r.Started.IsZero() && !r.Finished.IsZero() {
		fmt.Fprintf(&b, " in %s", r.Finished.Sub(r.Started).Round(time.Millisecond))
	}
	b.WriteString("\n")
	for _, s := range r.Sinks {
		state := "committed"
		if !s.Committed {
			state = "FAILED"
		}
		fmt.Fprintf(&b, "sink %s: %s, %d bytes, %.1fs", s.Name, state, s.Bytes, s.Duration.Seconds())
		if s.Error != "" {
			fmt.Fprintf(&b, ": %s", s.Error)
		}
		b.WriteString("\n")
	}
	if r.Error != "" && r.Status != StatusPartial {
		fmt.Fprintf(&b, "error: %s\n", r.Error)
	}
	return b.String()
}
