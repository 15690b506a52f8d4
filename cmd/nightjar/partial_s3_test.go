package main

import (
	"net"
	"os"
	"path/filepath"
	"testing"
)

// One healthy local sink and one s3 sink whose endpoint refuses connections (a closed port
// on 127.0.0.1): the run exits 3, the local sink commits, the report names the s3 sink.
//
// Needs the s3 sink, which lands from its own branch.
func TestPartialRunWithUnreachableS3(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	f := newOpsFixture(t)
	t.Setenv("S3_TEST_KEY", "minioadmin")
	t.Setenv("S3_TEST_SECRET", "minioadmin")
	appendConfig(t, f, "sinks:\n"+f.localSink("good")+
		"  - name: unreachable\n    type: s3\n    endpoint: \""+addr+"\"\n    secure: false\n    region: us-east-1\n"+
		"    bucket: nowhere\n    access_key_id: ${S3_TEST_KEY}\n    secret_access_key: ${S3_TEST_SECRET}\n")
	code, stdout, stderr := runCLI(t, "run", "-c", f.config, "--json")
	if code != exitPartial {
		t.Fatalf("exit %d, want %d\n%s", code, exitPartial, stderr)
	}
	rep := decodeReport(t, stdout)
	for _, s := range rep.Sinks {
		switch s.Name {
		case "good":
			if s.Status != "committed" || s.Snapshot != rep.ID {
				t.Fatalf("good: %+v", s)
			}
		case "unreachable":
			if s.Status != "failed" || s.Error == "" {
				t.Fatalf("unreachable: %+v", s)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(f.dir, "good", "testpipe", string(rep.ID), "manifest.json")); err != nil {
		t.Fatal(err)
	}
}
