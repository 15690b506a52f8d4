package ops

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPingIsBoundedByTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	p := NewPinger(srv.URL+"/uuid", 300*time.Millisecond, nil)
	start := time.Now()
	p.Fail(context.Background(), "x")
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("a hanging endpoint held the ping for %s", d)
	}
}

func TestNilPingerDoesNothing(t *testing.T) {
	var p *Pinger = NewPinger("", time.Second, nil)
	if p != nil {
		t.Fatal("an empty URL should give no pinger")
	}
	p.Start(context.Background()) // must not panic
}

func TestPingBodyIsCapped(t *testing.T) {
	got := make(chan int, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := 0
		buf := make([]byte, 4096)
		for {
			k, err := r.Body.Read(buf)
			n += k
			if err != nil {
				break
			}
		}
		got <- n
	}))
	defer srv.Close()
	NewPinger(srv.URL, time.Second, nil).Success(context.Background(), strings.Repeat("x", 50_000))
	if n := <-got; n != maxBody {
		t.Fatalf("body of %d bytes, want %d", n, maxBody)
	}
}

func TestRedactURL(t *testing.T) {
	_, err := http.Get("http://127.0.0.1:1/secret-uuid")
	if err == nil {
		t.Skip("port 1 answered")
	}
	if strings.Contains(redactURL(err).Error(), "secret-uuid") {
		t.Fatalf("URL kept: %v", redactURL(err))
	}
}

func TestParseLabels(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want map[string]string
	}{
		{`pipeline="p",sink="s"`, map[string]string{"pipeline": "p", "sink": "s"}},
		{`a="x\"y",b="z,w"`, map[string]string{"a": `x"y`, "b": "z,w"}},
		{`broken`, map[string]string{}},
	} {
		got := parseLabels(tc.in)
		if len(got) != len(tc.want) {
			t.Fatalf("%s: %v", tc.in, got)
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Fatalf("%s: %v", tc.in, got)
			}
		}
	}
}

func TestMetricsKeepOtherSinksAndIgnoreOtherPipelines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.prom")
	old := MetricLastSuccess + `{pipeline="p",sink="gone"} 100` + "\n" +
		MetricLastSuccess + `{pipeline="other",sink="a"} 200` + "\n" + "garbage line\n"
	if err := os.WriteFile(path, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	r := &Run{Pipeline: "p", Status: StatusFailed, Started: now.Add(-time.Minute), Finished: now,
		Sinks: []SinkRun{{Name: "a", Committed: false}}}
	if err := WriteMetrics(path, r); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	s := string(b)
	if !strings.Contains(s, MetricLastSuccess+`{pipeline="p",sink="gone"} 100`+"\n") {
		t.Fatalf("a sink missing from this run lost its last success:\n%s", s)
	}
	if strings.Contains(s, `sink="a"} 200`) || strings.Contains(s, MetricLastSuccess+`{pipeline="p",sink="a"}`) {
		t.Fatalf("another pipeline's value was taken, or a never-successful sink got a time:\n%s", s)
	}
	if !strings.Contains(s, MetricRunStatus+`{pipeline="p",status="failed"} 1`) {
		t.Fatalf("status:\n%s", s)
	}
}

func TestLockInProcess(t *testing.T) {
	dir := t.TempDir()
	l, err := AcquireLock(dir, "p")
	if err != nil {
		t.Fatal(err)
	}
	// A second open file description conflicts even within one process.
	if _, err := AcquireLock(dir, "p"); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "pid ") {
		t.Fatalf("second lock: %v", err)
	}
	other, err := AcquireLock(dir, "q")
	if err != nil {
		t.Fatalf("another pipeline is independent: %v", err)
	}
	other.Release()
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Fatal("release twice:", err)
	}
	l2, err := AcquireLock(dir, "p")
	if err != nil {
		t.Fatal(err)
	}
	l2.Release()
}

func TestSummaryNamesFailedSinks(t *testing.T) {
	r := &Run{Pipeline: "p", Host: "h", Snapshot: "20261122T020013Z-7f3a9c", Status: StatusPartial, Error: "partial",
		Sinks: []SinkRun{{Name: "a", Committed: true, Bytes: 10}, {Name: "b", Error: "put: no space"}}}
	s := r.Summary()
	for _, want := range []string{"p on h: partial", "sink a: committed", "sink b: FAILED", "no space"} {
		if !strings.Contains(s, want) {
			t.Fatalf("summary lacks %q:\n%s", want, s)
		}
	}
}
