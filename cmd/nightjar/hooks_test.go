package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// hookConfig makes each hook dump its NIGHTJAR_* environment to <dir>/<hook>.env; before
// exits with beforeExit.
func hookConfig(f *opsFixture, beforeExit string) string {
	dump := func(name string) string { return "env > " + filepath.Join(f.dir, name+".env") }
	return "hooks:\n" +
		"  before: '" + dump("before") + "; exit " + beforeExit + "'\n" +
		"  after: '" + dump("after") + "'\n" +
		"  on_error: '" + dump("on_error") + "'\n" +
		"  timeout: 10s\n"
}

func TestHooksSeeTheRun(t *testing.T) {
	f := newOpsFixture(t)
	appendConfig(t, f, "sinks:\n"+f.localSink("a")+hookConfig(f, "0"))
	code, stdout, stderr := runCLI(t, "run", "-c", f.config, "--json")
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	rep := decodeReport(t, stdout)
	before := readEnv(t, filepath.Join(f.dir, "before.env"))
	if before["NIGHTJAR_PIPELINE"] != "testpipe" || before["NIGHTJAR_CONFIG"] != f.config || before["NIGHTJAR_HOOK"] != "before" ||
		before["NIGHTJAR_STATUS"] != "running" || before["NIGHTJAR_SNAPSHOT"] != "" {
		t.Fatalf("before hook env: %v", before)
	}
	after := readEnv(t, filepath.Join(f.dir, "after.env"))
	want := map[string]string{"NIGHTJAR_HOOK": "after", "NIGHTJAR_PIPELINE": "testpipe", "NIGHTJAR_SNAPSHOT": string(rep.ID),
		"NIGHTJAR_STATUS": "ok", "NIGHTJAR_EXIT_CODE": "0", "NIGHTJAR_SINKS_COMMITTED": "a", "NIGHTJAR_SINKS_FAILED": "", "NIGHTJAR_CONFIG": f.config}
	for k, v := range want {
		if after[k] != v {
			t.Errorf("after hook: %s=%q, want %q", k, after[k], v)
		}
	}
	if after["NIGHTJAR_HOST"] == "" || after["NIGHTJAR_RAW_BYTES"] == "" || after["NIGHTJAR_RAW_BYTES"] == "0" {
		t.Errorf("after hook env: %v", after)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "on_error.env")); err == nil {
		t.Error("on_error ran after a successful run")
	}
}

func TestFailingBeforeHookAbortsTheRun(t *testing.T) {
	f := newOpsFixture(t)
	ps := newPingServer(t)
	appendConfig(t, f, "sinks:\n"+f.localSink("a")+hookConfig(f, "7")+"notify: {healthchecks_url: \""+ps.URL+"/hc\"}\n")
	code, stdout, stderr := runCLI(t, "run", "-c", f.config)
	if code != exitFailed {
		t.Fatalf("exit %d, want 1\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "run aborted, nothing was snapshotted: hook before: exit status 7") || stdout != "" {
		t.Fatalf("stdout %q, stderr:\n%s", stdout, stderr)
	}
	// No snapshot, not even a folder for one.
	if entries, _ := os.ReadDir(filepath.Join(f.dir, "a", "testpipe")); len(entries) > 0 {
		t.Fatalf("a snapshot was started: %v", entries)
	}
	onErr := readEnv(t, filepath.Join(f.dir, "on_error.env"))
	if onErr["NIGHTJAR_STATUS"] != "failed" || onErr["NIGHTJAR_EXIT_CODE"] != "1" || !strings.Contains(onErr["NIGHTJAR_ERROR"], "hook before") ||
		onErr["NIGHTJAR_SINKS_FAILED"] != "a" {
		t.Fatalf("on_error env: %v", onErr)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "after.env")); err == nil {
		t.Fatal("after ran although the run was aborted")
	}
	if got := strings.Join(ps.got(), "|"); got != "POST /hc/start|POST /hc/fail" {
		t.Fatalf("pings: %s", got)
	}
}

func TestPartialRunRunsOnError(t *testing.T) {
	f := newOpsFixture(t)
	appendConfig(t, f, "sinks:\n"+f.localSink("good")+brokenSink(t, f, "bad")+hookConfig(f, "0"))
	if code, _, stderr := runCLI(t, "run", "-c", f.config); code != exitPartial {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	env := readEnv(t, filepath.Join(f.dir, "on_error.env"))
	if env["NIGHTJAR_STATUS"] != "partial" || env["NIGHTJAR_EXIT_CODE"] != "3" || env["NIGHTJAR_SINKS_COMMITTED"] != "good" ||
		env["NIGHTJAR_SINKS_FAILED"] != "bad" || env["NIGHTJAR_SNAPSHOT"] == "" {
		t.Fatalf("on_error env: %v", env)
	}
}

func TestHookTimeoutKillsIt(t *testing.T) {
	f := newOpsFixture(t)
	appendConfig(t, f, "sinks:\n"+f.localSink("a")+"hooks: {before: 'sleep 30', timeout: 1s}\n")
	code, _, stderr := runCLI(t, "run", "-c", f.config)
	if code != exitFailed || !strings.Contains(stderr, "hook before: killed after its timeout of 1s") {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
}
