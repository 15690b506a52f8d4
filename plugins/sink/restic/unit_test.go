package restic

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nightjar-backup/nightjar/core"
)

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		out       string
		want      version
		retryLock bool
		err       bool
	}{
		{"restic 0.14.0 compiled with go1.19.8 on linux/amd64\n", version{0, 14, 0}, false, false},
		{"restic 0.16.4 compiled with go1.21.6 on linux/amd64", version{0, 16, 4}, true, false},
		{"restic 0.17.3-dev (compiled manually) compiled with go1.23 on linux/amd64", version{0, 17, 3}, true, false},
		{"restic 1.0.0 compiled with go1.30", version{1, 0, 0}, true, false},
		{"rustic 0.5.0", version{}, false, true},
	} {
		v, err := parseVersion(tc.out)
		if (err != nil) != tc.err || v != tc.want || featuresOf(v).retryLock != tc.retryLock {
			t.Errorf("parseVersion(%q) = %v, %v (retryLock %v)", tc.out, v, err, featuresOf(v).retryLock)
		}
	}
	if (version{0, 13, 1}).atLeast(0, 14) || !(version{0, 14, 0}).atLeast(0, 14) {
		t.Error("atLeast")
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		code   int
		stderr string
		want   errKind
	}{
		{1, "Fatal: wrong password or no key found", errWrongPassword},
		{12, "", errWrongPassword},
		{1, "Fatal: unable to open config file: stat /x/config: no such file or directory; Is there a repository at the following location?; /x", errNoRepository},
		{10, "", errNoRepository},
		{1, "unable to create lock in backend: repository is already locked by PID 21910 on vm by root", errLocked},
		{11, "", errLocked},
		{1, "Fatal: unable to save snapshot: disk full", errOther},
	} {
		if got := classify(tc.code, tc.stderr); got != tc.want {
			t.Errorf("classify(%d, %q) = %v, want %v", tc.code, tc.stderr, got, tc.want)
		}
	}
}

func TestChildEnvAndScrub(t *testing.T) {
	t.Setenv("AWS_SECRET_ACCESS_KEY", "ambient")
	cfg := Config{Repository: "rest:https://user:repo-secret@backup.example/repo", Password: "hunter2-hunter2",
		Env: map[string]string{"AWS_SECRET_ACCESS_KEY": "configured-secret", "AWS_DEFAULT_REGION": "eu"}}
	env, secrets := childEnv(cfg, "/var/cache/x")
	joined := strings.Join(env, "\n")
	for _, want := range []string{"RESTIC_PASSWORD=hunter2-hunter2", "AWS_SECRET_ACCESS_KEY=configured-secret", "RESTIC_CACHE_DIR=/var/cache/x", "TZ=UTC"} {
		if !strings.Contains(joined, want) {
			t.Errorf("child env lacks %s", want)
		}
	}
	if strings.Contains(joined, "=ambient") {
		t.Error("ambient AWS_SECRET_ACCESS_KEY leaked into the child env")
	}
	r := &runner{secrets: secrets}
	msg := r.scrub("Fatal: rest:https://user:repo-secret@backup.example/repo: hunter2-hunter2 configured-secret in eu")
	if strings.Contains(msg, "repo-secret") || strings.Contains(msg, "hunter2") || strings.Contains(msg, "configured-secret") || !strings.Contains(msg, " eu") {
		t.Errorf("scrub: %s", msg)
	}
	// A password file is restic's to read: nothing to scrub, nothing in the environment.
	env, secrets = childEnv(Config{Repository: "/r", PasswordFile: "/etc/pw"}, "")
	if len(secrets) != 0 || !strings.Contains(strings.Join(env, "\n"), "RESTIC_PASSWORD_FILE=/etc/pw") {
		t.Errorf("password_file: env %v secrets %v", env, secrets)
	}
}

func TestURLPassword(t *testing.T) {
	for in, want := range map[string]string{
		"rest:https://u:p4ss@host:8000/": "p4ss",
		"s3:https://host/bucket":         "",
		"/srv/restic":                    "",
		"rest:https://host/a@b":          "",
		"sftp:user@host:/srv":            "",
	} {
		if got := urlPassword(in); got != want {
			t.Errorf("urlPassword(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		values map[string]any
		want   string
	}{
		{map[string]any{"password": "x"}, "repository"},
		{map[string]any{"repository": "/r", "repository_file": "/f", "password": "x"}, "not both"},
		{map[string]any{"repository": "/r"}, "password_file"},
		{map[string]any{"repository": "/r", "password": "x", "env": map[string]string{"RESTIC_PASSWORD": "y"}}, "remove it from env"},
		{map[string]any{"repository": "/r", "password": "x", "env": map[string]string{"BAD-NAME": "y"}}, "invalid environment variable"},
	} {
		_, err := configFrom(core.NewComponent("r", "restic", tc.values))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !core.IsConfigError(err) {
			t.Errorf("configFrom(%v) = %v, want a config error about %q", tc.values, err, tc.want)
		}
	}
	cfg, err := configFrom(core.NewComponent("r", "restic", map[string]any{"repository": "/r", "password": "read-from-file", "password_file": "/etc/pw", "prune": "never"}))
	if err != nil || cfg.PasswordFile != "/etc/pw" || cfg.Password != "" || cfg.Prune {
		t.Errorf("password_file: %+v, %v", cfg, err)
	}
}

func TestTailSummary(t *testing.T) {
	tl := &tail{max: 64}
	io.WriteString(tl, strings.Repeat("noise\n", 50)+"\nFatal: it broke\n")
	if s := tl.summary(); !strings.HasSuffix(s, "Fatal: it broke") || len(tl.b) > 64 {
		t.Errorf("summary %q (%d bytes kept)", s, len(tl.b))
	}
}

// failingWriter accepts n bytes, then fails like a pipe whose reader exited.
type failingWriter struct {
	buf bytes.Buffer
	n   int
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.buf.Len()+len(p) > w.n {
		return 0, errors.New("broken pipe")
	}
	return w.buf.Write(p)
}
func (w *failingWriter) Close() error { return nil }

func TestFeedReplaysWhatAFailedAttemptTook(t *testing.T) {
	src := bytes.Repeat([]byte("0123456789abcdef"), 3*replayLimit/16)
	for _, tc := range []struct {
		name       string
		tookBefore int // bytes the failed attempt accepted before its restic exited
		replayable bool
	}{
		{"lock error before restic read anything", 2 * feedChunk, true},
		{"restic failed after reading more than the replay limit", 2 * replayLimit, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFeed(bytes.NewReader(src))
			defer f.close()
			if err := f.writeTo(&failingWriter{n: tc.tookBefore}, make(chan struct{})); err == nil {
				t.Fatal("first attempt did not fail")
			}
			if f.replayable() != tc.replayable {
				t.Fatalf("replayable = %v, want %v", f.replayable(), tc.replayable)
			}
			if !tc.replayable {
				return
			}
			second := &failingWriter{n: 1 << 30}
			if err := f.writeTo(second, make(chan struct{})); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(second.buf.Bytes(), src) || f.n != int64(len(src)) {
				t.Fatalf("replayed attempt got %d bytes (counted %d), want %d", second.buf.Len(), f.n, len(src))
			}
		})
	}
}

func TestFeedSourceErrorLeavesStdinOpen(t *testing.T) {
	pr, pw := io.Pipe()
	go func() {
		pw.Write([]byte("partial"))
		pw.CloseWithError(errors.New("disk read error"))
	}()
	f := newFeed(pr)
	defer f.close()
	w := &closeRecorder{}
	err := f.writeTo(w, make(chan struct{}))
	var se *sourceError
	if !errors.As(err, &se) || w.closed {
		t.Fatalf("writeTo = %v, stdin closed %v; want a sourceError and stdin left open", err, w.closed)
	}
	stop := make(chan struct{})
	close(stop)
	g := newFeed(blockingReader{})
	defer g.close()
	if err := g.writeTo(w, stop); !errors.Is(err, errFeedStopped) {
		t.Fatalf("stopped attempt: %v", err)
	}
}

type closeRecorder struct {
	bytes.Buffer
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }

type blockingReader struct{}

func (blockingReader) Read([]byte) (int, error) { time.Sleep(time.Hour); return 0, nil }

func TestResolveRepository(t *testing.T) {
	for _, tc := range []struct{ repo, file, want string }{
		{"./repo", "/etc/nightjar/p.yaml", "/etc/nightjar/repo"},
		{"local:repo", "/etc/nightjar/p.yaml", "local:/etc/nightjar/repo"},
		{"/srv/restic", "/etc/nightjar/p.yaml", "/srv/restic"},
		{"s3:https://host/bucket", "/etc/nightjar/p.yaml", "s3:https://host/bucket"},
		{"sftp:user@host:/srv/restic", "/etc/p.yaml", "sftp:user@host:/srv/restic"},
		{"rel", "", "rel"},
	} {
		if got := resolveRepository(tc.repo, tc.file); got != tc.want {
			t.Errorf("resolveRepository(%q, %q) = %q, want %q", tc.repo, tc.file, got, tc.want)
		}
	}
}
