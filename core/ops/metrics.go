package ops

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Metric names written to the textfile. nightjar_last_success_timestamp_seconds is the one
// to alert on: `time() - nightjar_last_success_timestamp_seconds > 26*3600`.
const (
	MetricLastSuccess   = "nightjar_last_success_timestamp_seconds"
	MetricLastRun       = "nightjar_last_run_timestamp_seconds"
	MetricRunDuration   = "nightjar_last_run_duration_seconds"
	MetricRunStatus     = "nightjar_last_run_status"
	MetricRawBytes      = "nightjar_last_run_raw_bytes"
	MetricSinkOK        = "nightjar_last_run_sink_success"
	MetricSinkBytes     = "nightjar_last_run_stored_bytes"
	MetricSinkDuration  = "nightjar_last_run_sink_duration_seconds"
	metricsFileMode     = 0o644
	metricsTempPrefix   = ".nightjar-metrics-"
	metricsMaxOldLength = 1 << 20
)

type family struct {
	name, help, typ string
	samples         []sample
}

type sample struct {
	labels [][2]string
	value  float64
}

// WriteMetrics writes the run's metrics to path in the Prometheus text format, atomically
// (a temporary file in the same folder, then rename), for node_exporter's textfile
// collector. A sink that failed this run keeps the last success time read from the old file.
func WriteMetrics(path string, r *Run) error {
	prev, err := readLastSuccess(path, r.Pipeline)
	if err != nil {
		return err
	}
	pl := [2]string{"pipeline", r.Pipeline}
	var statusSamples []sample
	for _, st := range []string{StatusOK, StatusPartial, StatusFailed} {
		v := 0.0
		if r.Status == st {
			v = 1
		}
		statusSamples = append(statusSamples, sample{[][2]string{pl, {"status", st}}, v})
	}
	fams := []*family{
		{name: MetricLastSuccess, typ: "gauge", help: "Unix time of the last run that committed a snapshot in this sink."},
		{name: MetricLastRun, typ: "gauge", help: "Unix time the last run finished.", samples: []sample{{[][2]string{pl}, unixTime(r.Finished)}}},
		{name: MetricRunDuration, typ: "gauge", help: "Duration of the last run.", samples: []sample{{[][2]string{pl}, r.Finished.Sub(r.Started).Seconds()}}},
		{name: MetricRunStatus, typ: "gauge", help: "1 for the status of the last run (ok, partial or failed), 0 for the others.", samples: statusSamples},
		{name: MetricRawBytes, typ: "gauge", help: "Raw bytes of every artifact of the last run.", samples: []sample{{[][2]string{pl}, float64(r.RawBytes)}}},
		{name: MetricSinkOK, typ: "gauge", help: "1 when the last run committed its snapshot in this sink, else 0."},
		{name: MetricSinkBytes, typ: "gauge", help: "Bytes the last run stored in this sink."},
		{name: MetricSinkDuration, typ: "gauge", help: "Time this sink took in the last run."},
	}
	seen := map[string]bool{}
	for _, s := range r.Sinks {
		seen[s.Name] = true
		ls := [][2]string{pl, {"sink", s.Name}}
		ok := 0.0
		if s.Committed {
			ok = 1
			fams[0].samples = append(fams[0].samples, sample{ls, unixTime(r.Finished)})
		} else if v, had := prev[s.Name]; had {
			fams[0].samples = append(fams[0].samples, sample{ls, v})
		}
		fams[5].samples = append(fams[5].samples, sample{ls, ok})
		fams[6].samples = append(fams[6].samples, sample{ls, float64(s.Bytes)})
		fams[7].samples = append(fams[7].samples, sample{ls, s.Duration.Seconds()})
	}
	// Sinks not in this run (a run that failed before it started them) keep their value too.
	var rest []string
	for name := range prev {
		if !seen[name] {
			rest = append(rest, name)
		}
	}
	sort.Strings(rest)
	for _, name := range rest {
		fams[0].samples = append(fams[0].samples, sample{[][2]string{pl, {"sink", name}}, prev[name]})
	}
	var b strings.Builder
	for _, f := range fams {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", f.name, f.help, f.name, f.typ)
		for _, s := range f.samples {
			b.WriteString(f.name)
			b.WriteString("{")
			for i, l := range s.labels {
				if i > 0 {
					b.WriteString(",")
				}
				fmt.Fprintf(&b, "%s=%q", l[0], escapeLabel(l[1]))
			}
			b.WriteString("} ")
			b.WriteString(strconv.FormatFloat(s.value, 'g', -1, 64))
			b.WriteString("\n")
		}
	}
	return writeAtomic(path, []byte(b.String()))
}

func unixTime(t time.Time) float64 { return float64(t.Unix()) }

// escapeLabel leaves only what %q and the text format agree on: %q escapes backslash, quote
// and newline as the format wants; other control characters are dropped from label values.
func escapeLabel(v string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\n' || r == 0x7f || r > 0x7e {
			return '_'
		}
		return r
	}, v)
}

// readLastSuccess returns the old file's last success time per sink of pipeline.
func readLastSuccess(path, pipeline string) (map[string]float64, error) {
	out := map[string]float64{}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("metrics: read %s: %w", path, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), metricsMaxOldLength)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, MetricLastSuccess+"{")
		if !ok {
			continue
		}
		labelPart, valuePart, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		labels := parseLabels(labelPart)
		v, err := strconv.ParseFloat(strings.Fields(valuePart)[0], 64)
		if err != nil || labels["pipeline"] != pipeline || labels["sink"] == "" {
			continue
		}
		out[labels["sink"]] = v
	}
	// A damaged old file loses only the carried-over values, never the new ones.
	return out, nil
}

// parseLabels reads `a="x",b="y"` as written by WriteMetrics.
func parseLabels(s string) map[string]string {
	out := map[string]string{}
	for s != "" {
		name, rest, ok := strings.Cut(s, "=")
		if !ok || !strings.HasPrefix(rest, `"`) {
			break
		}
		// Find the closing quote, skipping escaped characters.
		end := -1
		for i := 1; i < len(rest); i++ {
			if rest[i] == '\\' {
				i++
				continue
			}
			if rest[i] == '"' {
				end = i
				break
			}
		}
		if end < 0 {
			break
		}
		val, err := strconv.Unquote(rest[:end+1])
		if err != nil {
			break
		}
		out[strings.TrimSpace(name)] = val
		s = strings.TrimPrefix(rest[end+1:], ",")
	}
	return out
}

// writeAtomic replaces path with data: readers see the old file or the new one, never half.
func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	// The collector reads only *.prom files, so the temporary name must not end in .prom.
	f, err := os.CreateTemp(dir, metricsTempPrefix+"*.tmp")
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("metrics: write %s: %w", tmp, err)
	}
	if err := f.Chmod(metricsFileMode); err != nil {
		f.Close()
		return fmt.Errorf("metrics: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("metrics: fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}
