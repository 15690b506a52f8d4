package retention

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// ABI is the policy interface version this host speaks.
const ABI = 1

// Snapshot is one snapshot as a policy sees it.
type Snapshot struct {
	ID     string            `json:"id"`
	Time   time.Time         `json:"time"`
	Size   int64             `json:"size"`
	Tags   []string          `json:"tags"`
	Labels map[string]string `json:"labels"`
}

// Input is the document written to a policy's stdin.
type Input struct {
	ABI       int            `json:"abi"`
	Now       time.Time      `json:"now"`
	Pipeline  string         `json:"pipeline"`
	Sink      string         `json:"sink"`
	Params    map[string]any `json:"params"`
	Snapshots []Snapshot     `json:"snapshots"`
	// Limits are the sandbox's limits, filled in by the host, so a runtime can size its
	// heap (sdk/policy turns Go's GC off below three quarters of the memory limit).
	Limits *InputLimits `json:"limits,omitempty"`
}

// InputLimits tells a policy the limits it runs under.
type InputLimits struct {
	MemoryMiB int   `json:"memory_mib"`
	TimeoutMS int64 `json:"timeout_ms"`
}

// Decision is a policy's verdict on one snapshot.
type Decision struct {
	ID     string `json:"id"`
	Keep   bool   `json:"keep"`
	Reason string `json:"reason"`
}

// Output is the document a policy writes to stdout.
type Output struct {
	ABI       int        `json:"abi"`
	Decisions []Decision `json:"decisions"`
}

// maxReason caps a reason's length; longer ones are trimmed (they are for people).
const maxReason = 512

// ParseOutput checks a policy's stdout against the snapshots it was given: valid JSON,
// abi 1, exactly one decision for every snapshot, no unknown or repeated id.
func ParseOutput(b []byte, in *Input) (*Output, error) {
	out, ok := scanOutput(b)
	if !ok {
		// Anything the fast reader does not take (escapes, other key spellings, an
		// error) is read by encoding/json, which also words the errors.
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		out = Output{}
		if err := dec.Decode(&out); err != nil {
			return nil, fmt.Errorf("output is not valid ABI v1 JSON: %w (output starts %q)", err, head(b, 120))
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("output has data after the JSON document (output starts %q)", head(b, 120))
		}
	}
	if out.ABI != ABI {
		return nil, fmt.Errorf("output has abi %d; this nightjar speaks abi %d", out.ABI, ABI)
	}
	given := make(map[string]bool, len(in.Snapshots))
	for _, s := range in.Snapshots {
		given[s.ID] = true
	}
	seen := make(map[string]bool, len(out.Decisions))
	for i := range out.Decisions {
		d := &out.Decisions[i]
		if !given[d.ID] {
			return nil, fmt.Errorf("output decides on unknown snapshot id %q", d.ID)
		}
		if seen[d.ID] {
			return nil, fmt.Errorf("output decides twice on snapshot %s", d.ID)
		}
		seen[d.ID] = true
		if len(d.Reason) > maxReason {
			d.Reason = d.Reason[:maxReason] + "…"
		}
	}
	if len(seen) != len(given) {
		for _, s := range in.Snapshots {
			if !seen[s.ID] {
				return nil, fmt.Errorf("output has no decision for snapshot %s (%d of %d decided)", s.ID, len(seen), len(given))
			}
		}
	}
	return &out, nil
}

func head(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
