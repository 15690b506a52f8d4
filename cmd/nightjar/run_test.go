package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"

	"github.com/nightjar-backup/nightjar/core/ops"
	"github.com/nightjar-backup/nightjar/core/testenv"
)

func decodeReport(t *testing.T, stdout string) runReport {
	t.Helper()
	var rep runReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("run --json printed no JSON report: %v\n%s", err, stdout)
	}
	return rep
}

func TestRunJSONNamesCommittedSnapshot(t *testing.T) {
	f := newOpsFixture(t)
	appendConfig(t, f, "sinks:\n"+f.localSink("a"))
	code, stdout, stderr := runCLI(t, "run", "-c", f.config, "--json")
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	rep := decodeReport(t, stdout)
	if rep.ID == "" || rep.Status != ops.StatusOK || rep.Pipeline != "testpipe" || rep.Host == "" {
		t.Fatalf("report: %+v", rep)
	}
	if len(rep.Sinks) != 1 || rep.Sinks[0].Snapshot != rep.ID || rep.Sinks[0].Status != "committed" || rep.Sinks[0].Bytes <= 0 {
		t.Fatalf("sinks: %+v", rep.Sinks)
	}
	if len(rep.Artifacts) != 1 || rep.Artifacts[0].Name != "data" || len(rep.Artifacts[0].SHA256) != 64 || rep.Artifacts[0].Size <= rep.Artifacts[0].StoredSize {
		t.Fatalf("artifacts: %+v", rep.Artifacts)
	}
	if got := rep.Sinks[0].Artifacts; len(got) != 1 || got[0].Object != "data.tar.zst" || got[0].StoredSHA256 != rep.Artifacts[0].StoredSHA256 {
		t.Fatalf("sink artifacts: %+v", got)
	}
	if !rep.Finished.After(rep.Started) || rep.Duration <= 0 {
		t.Fatalf("times: %v %v %v", rep.Started, rep.Finished, rep.Duration)
	}
	// The id named is the committed snapshot that `snapshots` lists.
	if _, err := os.Stat(filepath.Join(f.dir, "a", "testpipe", string(rep.ID), "manifest.json")); err != nil {
		t.Fatal(err)
	}
	code, stdout, _ = runCLI(t, "snapshots", "-c", f.config, "--json")
	if code != 0 || !strings.Contains(stdout, string(rep.ID)) {
		t.Fatalf("snapshots does not list %s: %s", rep.ID, stdout)
	}
}

func TestRunHumanReport(t *testing.T) {
	f := newOpsFixture(t)
	appendConfig(t, f, "sinks:\n"+f.localSink("a"))
	code, stdout, stderr := runCLI(t, "run", "-c", f.config)
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if !regexp.MustCompile(`snapshot \d{8}T\d{6}Z-[0-9a-f]+ of pipeline testpipe: ok`).MatchString(stdout) ||
		!strings.Contains(stdout, "sink a") || strings.Contains(stdout, "{") {
		t.Fatalf("human report:\n%s", stdout)
	}
}

// brokenSink is a local sink whose pipeline folder is a regular file: it builds, then every
// Put fails, as a full or read-only disk would.
func brokenSink(t *testing.T, f *opsFixture, name string) string {
	t.Helper()
	root := filepath.Join(f.dir, name)
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "testpipe"), []byte("not a folder"), 0o644); err != nil {
		t.Fatal(err)
	}
	return f.localSink(name)
}

func TestRunPartialExits3AndHealthySinkCommits(t *testing.T) {
	f := newOpsFixture(t)
	appendConfig(t, f, "sinks:\n"+f.localSink("good")+brokenSink(t, f, "bad"))
	code, stdout, stderr := runCLI(t, "run", "-c", f.config, "--json")
	if code != exitPartial {
		t.Fatalf("exit %d, want %d\n%s", code, exitPartial, stderr)
	}
	rep := decodeReport(t, stdout)
	if rep.Status != ops.StatusPartial {
		t.Fatalf("status %q", rep.Status)
	}
	byName := map[string]sinkReport{}
	for _, s := range rep.Sinks {
		byName[s.Name] = s
	}
	if g := byName["good"]; g.Status != "committed" || g.Snapshot != rep.ID {
		t.Fatalf("good: %+v", g)
	}
	if b := byName["bad"]; b.Status != "failed" || b.Error == "" || b.Snapshot != "" {
		t.Fatalf("bad: %+v", b)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "good", "testpipe", string(rep.ID), "manifest.json")); err != nil {
		t.Fatalf("healthy sink did not commit: %v", err)
	}
	if !strings.Contains(stderr, `sink "bad"`) {
		t.Fatalf("stderr does not say which sink failed:\n%s", stderr)
	}
	// Human output says it too.
	code, stdout, _ = runCLI(t, "run", "-c", f.config)
	if code != exitPartial || !regexp.MustCompile(`sink bad\s+failed`).MatchString(stdout) || !regexp.MustCompile(`sink good\s+committed`).MatchString(stdout) {
		t.Fatalf("exit %d, human report:\n%s", code, stdout)
	}
}

// pingServer records healthchecks pings.
type pingServer struct {
	*httptest.Server
	mu    sync.Mutex
	paths []string
	body  map[string]string
}

func newPingServer(t *testing.T) *pingServer {
	ps := &pingServer{body: map[string]string{}}
	ps.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		ps.mu.Lock()
		ps.paths = append(ps.paths, r.Method+" "+r.URL.Path)
		ps.body[r.URL.Path] = string(b)
		ps.mu.Unlock()
		io.WriteString(w, "OK")
	}))
	t.Cleanup(ps.Close)
	return ps
}

func (ps *pingServer) got() []string {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return append([]string(nil), ps.paths...)
}

const checkUUID = "5f0e4c1a-secret-check"

func TestRunPingsHealthchecks(t *testing.T) {
	ps := newPingServer(t)
	url := ps.URL + "/ping/" + checkUUID
	for _, tc := range []struct {
		name     string
		broken   bool
		wantCode int
		want     []string
		bodyHas  string
	}{
		{"success", false, exitOK, []string{"POST /ping/" + checkUUID + "/start", "POST /ping/" + checkUUID}, "ok, snapshot"},
		{"failure", true, exitFailed, []string{"POST /ping/" + checkUUID + "/start", "POST /ping/" + checkUUID + "/fail"}, "sink a: FAILED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps.mu.Lock()
			ps.paths = nil
			ps.mu.Unlock()
			f := newOpsFixture(t)
			sink := f.localSink("a")
			if tc.broken {
				sink = brokenSink(t, f, "a")
			}
			t.Setenv("HC_URL", url)
			appendConfig(t, f, "sinks:\n"+sink+"notify: {healthchecks_url: \"${HC_URL}\", timeout: 5s}\n")
			code, _, stderr := runCLI(t, "--log-level", "debug", "run", "-c", f.config)
			if code != tc.wantCode {
				t.Fatalf("exit %d\n%s", code, stderr)
			}
			if got := ps.got(); strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("pings %q, want %q", got, tc.want)
			}
			last := tc.want[len(tc.want)-1][len("POST "):]
			ps.mu.Lock()
			body := ps.body[last]
			ps.mu.Unlock()
			if !strings.Contains(body, tc.bodyHas) || !strings.Contains(body, "testpipe") {
				t.Fatalf("ping body:\n%s", body)
			}
			if strings.Contains(stderr, checkUUID) || strings.Contains(body, checkUUID) {
				t.Fatalf("the check's secret URL leaked:\n%s", stderr)
			}
		})
	}
}

func TestRunUnreachablePingNeverFailsTheBackup(t *testing.T) {
	// A listener closed at once: connections to its port are refused.
	ln := httptest.NewServer(http.NotFoundHandler())
	url := ln.URL + "/" + checkUUID
	ln.Close()
	f := newOpsFixture(t)
	appendConfig(t, f, "sinks:\n"+f.localSink("a")+"notify: {healthchecks_url: \""+url+"\", timeout: 2s}\n")
	start := time.Now()
	code, _, stderr := runCLI(t, "run", "-c", f.config)
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "healthchecks ping failed") || strings.Contains(stderr, checkUUID) {
		t.Fatalf("stderr:\n%s", stderr)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("pings are not bounded in time: %s", d)
	}
}

func TestRunWritesMetricsTextfile(t *testing.T) {
	f := newOpsFixture(t)
	prom := filepath.Join(f.dir, "textfile", "nightjar.prom")
	appendConfig(t, f, "sinks:\n"+f.localSink("a")+f.localSink("b")+"metrics: {textfile: "+prom+"}\n")
	if code, _, stderr := runCLI(t, "run", "-c", f.config); code != exitOK {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	first := parseProm(t, prom)
	now := float64(time.Now().Unix())
	for _, sink := range []string{"a", "b"} {
		v, ok := first[ops.MetricLastSuccess+`{pipeline="testpipe",sink="`+sink+`"}`]
		if !ok || v < now-60 || v > now+1 {
			t.Fatalf("last success of %s: %v (now %v)\n%v", sink, v, now, first)
		}
	}
	if first[ops.MetricRunStatus+`{pipeline="testpipe",status="ok"}`] != 1 || first[ops.MetricRawBytes+`{pipeline="testpipe"}`] <= 0 ||
		first[ops.MetricSinkBytes+`{pipeline="testpipe",sink="a"}`] <= 0 {
		t.Fatalf("metrics: %v", first)
	}
	if _, ok := first[ops.MetricRunDuration+`{pipeline="testpipe"}`]; !ok {
		t.Fatalf("no duration: %v", first)
	}

	// Break sink b: its last success must stay at the first run's time while a moves on.
	time.Sleep(1100 * time.Millisecond)
	if err := os.RemoveAll(filepath.Join(f.dir, "b")); err != nil {
		t.Fatal(err)
	}
	brokenSink(t, f, "b")
	if code, _, stderr := runCLI(t, "run", "-c", f.config); code != exitPartial {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	second := parseProm(t, prom)
	bKey := ops.MetricLastSuccess + `{pipeline="testpipe",sink="b"}`
	aKey := ops.MetricLastSuccess + `{pipeline="testpipe",sink="a"}`
	if second[bKey] != first[bKey] || second[aKey] <= first[aKey] {
		t.Fatalf("last success: first %v / %v, second %v / %v", first[aKey], first[bKey], second[aKey], second[bKey])
	}
	if second[ops.MetricSinkOK+`{pipeline="testpipe",sink="b"}`] != 0 || second[ops.MetricSinkOK+`{pipeline="testpipe",sink="a"}`] != 1 ||
		second[ops.MetricRunStatus+`{pipeline="testpipe",status="partial"}`] != 1 {
		t.Fatalf("metrics after a partial run: %v", second)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(prom), ".nightjar-metrics-*")); len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

// parseProm parses the textfile with Prometheus' own parser and flattens it to
// `name{labels}` → value.
func parseProm(t *testing.T, path string) map[string]float64 {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(fh)
	if err != nil {
		t.Fatalf("%s is not valid Prometheus text format: %v", path, err)
	}
	out := map[string]float64{}
	for name, fam := range fams {
		for _, m := range fam.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+`="`+l.GetValue()+`"`)
			}
			out[name+"{"+strings.Join(ls, ",")+"}"] = m.GetGauge().GetValue()
		}
	}
	return out
}

// A snapshot that commits while its sink's retention fails must not look like a clean
// night: the run exits 1, the report says why, and the check is pinged /fail.
func TestRunRetentionFailurePingsFail(t *testing.T) {
	ps := newPingServer(t)
	f := newOpsFixture(t)
	bad := filepath.Join(f.dir, "broken.wasm")
	if err := os.WriteFile(bad, []byte("not a wasm module"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HC_URL", ps.URL+"/ping/"+checkUUID)
	appendConfig(t, f, "sinks:\n  - name: a\n    type: local\n    path: "+filepath.Join(f.dir, "a")+
		"\n    retention: {policy: "+bad+"}\nnotify: {healthchecks_url: \"${HC_URL}\", timeout: 5s}\n")
	code, stdout, stderr := runCLI(t, "run", "--json", "-c", f.config)
	if code != exitFailed {
		t.Fatalf("exit %d, want %d\n%s", code, exitFailed, stderr)
	}
	rep := decodeReport(t, stdout)
	if rep.Status != "ok" || rep.RetentionError == "" || rep.Sinks[0].Status != "committed" {
		t.Fatalf("report: status %q retention_error %q sinks %+v", rep.Status, rep.RetentionError, rep.Sinks)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "a", "testpipe", string(rep.ID), "manifest.json")); err != nil {
		t.Fatalf("the snapshot itself must stay committed: %v", err)
	}
	want := []string{"POST /ping/" + checkUUID + "/start", "POST /ping/" + checkUUID + "/fail"}
	if got := ps.got(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("pings %q, want %q", got, want)
	}
}

// A database whose copy fails its integrity check fails the run, though its check now runs
// while the copy is already on its way to the sinks: nothing is committed, and the error
// names the database.
func TestRunDamagedDatabaseCommitsNowhere(t *testing.T) {
	f := newOpsFixture(t)
	db := filepath.Join(f.dir, "josh.db")
	mk := testenv.Command(t, "sqlite3", db, "CREATE TABLE t(x); WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL "+
		"SELECT i+1 FROM c WHERE i < 20000) INSERT INTO t SELECT randomblob(200) FROM c;")
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("sqlite3: %v\n%s", err, out)
	}
	b, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	for i := 2 * 4096; i < 6*4096; i++ { // b-tree pages after the schema; the header stays
		b[i] = byte(i * 7)
	}
	if err := os.WriteFile(db, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := "version: 1\npipeline: testpipe\nstate_dir: " + f.state + "\nsources:\n" +
		"  - {name: data, type: tree, path: " + f.data + "}\n  - {name: josh, type: sqlite, path: " + db + "}\n" +
		"transforms:\n  - {type: zstd, level: 3}\nsinks:\n" + f.localSink("a")
	if err := os.WriteFile(f.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, "run", "-c", f.config)
	if code != exitFailed || !strings.Contains(stderr, db) || !strings.Contains(stderr, "integrity check failed") {
		t.Fatalf("exit %d, want %d with an error naming %s and its failed check:\n%s", code, exitFailed, db, stderr)
	}
	filepath.WalkDir(filepath.Join(f.dir, "a"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			t.Errorf("the failed run left %s in the sink", p)
		}
		return nil
	})
	if code, stdout, _ := runCLI(t, "snapshots", "-c", f.config, "--json"); code != 0 || strings.Contains(stdout, "testpipe") {
		t.Fatalf("snapshots after a failed run (exit %d): %s", code, stdout)
	}
}
