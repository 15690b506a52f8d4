package s3

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/nightjar-backup/nightjar/core/testenv"
	"github.com/nightjar-backup/nightjar/sdk/blob"
)

// server is one real MinIO with a bucket, and a third-party client on it.
type server struct {
	m      *testenv.MinIO
	client *minio.Client // plain minio-go, as any other S3 tool would use it
	bucket string
}

func startServer(t testing.TB) *server {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs MinIO")
	}
	m := testenv.StartMinIO(t)
	c, err := minio.New(m.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(m.AccessKey, m.SecretKey, ""),
		Transport: &http.Transport{Proxy: nil}})
	if err != nil {
		t.Fatal(err)
	}
	srv := &server{m: m, client: c, bucket: "nightjar-test"}
	if err := c.MakeBucket(context.Background(), srv.bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket: %v", err)
	}
	return srv
}

// options returns store options for this server; endpoint may be a proxy in front of it.
func (srv *server) options(endpoint string) Options {
	if endpoint == "" {
		endpoint = srv.m.Endpoint
	}
	return Options{Name: "spaces", Endpoint: endpoint, Bucket: srv.bucket, Prefix: "nightly/",
		AccessKeyID: srv.m.AccessKey, SecretAccessKey: srv.m.SecretKey, PartSize: MinPartSize,
		Transport: &http.Transport{Proxy: nil}}
}

func (srv *server) store(t testing.TB, opt Options) *Store {
	t.Helper()
	st, err := NewStore(opt)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// incomplete lists multipart uploads that were neither completed nor aborted.
func (srv *server) incomplete(t *testing.T) []string {
	t.Helper()
	var out []string
	for u := range srv.client.ListIncompleteUploads(context.Background(), srv.bucket, "", true) {
		if u.Err != nil {
			t.Fatalf("list incomplete uploads: %v", u.Err)
		}
		out = append(out, u.Key)
	}
	return out
}

// rawKeys lists every object in the bucket with minio-go directly.
func (srv *server) rawKeys(t *testing.T) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for o := range srv.client.ListObjects(context.Background(), srv.bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("list: %v", o.Err)
		}
		out[o.Key] = o.Size
	}
	return out
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func get(t *testing.T, st *Store, key string, offset int64) []byte {
	t.Helper()
	rc, err := st.Get(context.Background(), key, offset)
	if err != nil {
		t.Fatalf("get %s@%d: %v", key, offset, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return b
}

// failingReader returns data, then err.
type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

func TestStoreAgainstMinIO(t *testing.T) {
	srv := startServer(t)
	st := srv.store(t, srv.options(""))
	ctx := context.Background()

	t.Run("put and get, single and multipart", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			size int
		}{
			{"empty", 0},
			{"small", 1000},
			{"exactly one part", MinPartSize},
			{"three parts", 2*MinPartSize + 12345},
		} {
			t.Run(tc.name, func(t *testing.T) {
				data := randomBytes(t, tc.size)
				key := "p/" + strings.ReplaceAll(tc.name, " ", "-")
				n, err := st.Put(ctx, key, bytes.NewReader(data))
				if err != nil {
					t.Fatal(err)
				}
				if n != int64(len(data)) {
					t.Fatalf("Put returned %d, want %d", n, len(data))
				}
				if got := get(t, st, key, 0); !bytes.Equal(got, data) {
					t.Fatalf("read back %d bytes that differ from the %d written", len(got), len(data))
				}
				// The object key is <prefix><key>, as any S3 client sees it.
				if size, ok := srv.rawKeys(t)["nightly/"+key]; !ok || size != int64(len(data)) {
					t.Fatalf("minio-go sees nightly/%s with size %d (present %v), want %d", key, size, ok, len(data))
				}
			})
		}
	})

	t.Run("get with offset uses ranges", func(t *testing.T) {
		data := randomBytes(t, MinPartSize+777)
		if _, err := st.Put(ctx, "off/obj", bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		for _, off := range []int64{1, MinPartSize - 1, MinPartSize + 5, int64(len(data)) - 1, int64(len(data))} {
			if got := get(t, st, "off/obj", off); !bytes.Equal(got, data[off:]) {
				t.Errorf("offset %d: got %d bytes, want %d", off, len(got), len(data)-int(off))
			}
		}
	})

	t.Run("missing keys wrap ErrNotFound", func(t *testing.T) {
		if _, err := st.Get(ctx, "nope/missing", 0); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("Get missing: %v, want ErrNotFound", err)
		}
		if _, err := st.Get(ctx, "nope/missing", 10); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("Get missing at offset: %v, want ErrNotFound", err)
		}
		if err := st.Delete(ctx, "nope/missing"); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("Delete missing: %v, want ErrNotFound", err)
		}
		if _, err := st.Put(ctx, "del/x", strings.NewReader("x")); err != nil {
			t.Fatal(err)
		}
		if err := st.Delete(ctx, "del/x"); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Get(ctx, "del/x", 0); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("Get after Delete: %v, want ErrNotFound", err)
		}
	})

	t.Run("list by prefix", func(t *testing.T) {
		for _, k := range []string{"l/a/1", "l/a/2", "l/b/1", "lx/1"} {
			if _, err := st.Put(ctx, k, strings.NewReader(k)); err != nil {
				t.Fatal(err)
			}
		}
		var got []string
		if err := st.List(ctx, "l/a/", func(k string, size int64) error {
			if size != int64(len(k)) {
				t.Errorf("%s: size %d, want %d", k, size, len(k))
			}
			got = append(got, k)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		sort.Strings(got)
		if fmt.Sprint(got) != "[l/a/1 l/a/2]" {
			t.Errorf("List(l/a/) = %v", got)
		}
		stop := errors.New("stop")
		if err := st.List(ctx, "l/", func(string, int64) error { return stop }); !errors.Is(err, stop) {
			t.Errorf("List with failing fn: %v, want stop", err)
		}
	})

	t.Run("invalid keys are refused", func(t *testing.T) {
		for _, k := range []string{"", "/abs", "a/../b", "a//b"} {
			if _, err := st.Put(ctx, k, strings.NewReader("x")); err == nil {
				t.Errorf("Put(%q) succeeded", k)
			}
		}
	})

	t.Run("an unfinished put is never listed; a failed one leaves nothing", func(t *testing.T) {
		old := randomBytes(t, 100)
		if _, err := st.Put(ctx, "atomic/obj", bytes.NewReader(old)); err != nil {
			t.Fatal(err)
		}
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() { _, err := st.Put(ctx, "atomic/obj", pr); done <- err }()
		// Two parts: the first is uploaded while the second is read.
		if _, err := pw.Write(randomBytes(t, 2*MinPartSize+10)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return len(srv.incomplete(t)) == 1 })
		if err := st.List(ctx, "atomic/", func(k string, size int64) error {
			if size != int64(len(old)) {
				t.Errorf("List shows %s with %d bytes while a Put is unfinished; want the old %d", k, size, len(old))
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		pw.CloseWithError(errors.New("source failed"))
		err := <-done
		if err == nil || !strings.Contains(err.Error(), "source failed") {
			t.Fatalf("Put after a reader error: %v", err)
		}
		if got := get(t, st, "atomic/obj", 0); !bytes.Equal(got, old) {
			t.Fatalf("the previous object changed after a failed Put")
		}
		if u := srv.incomplete(t); len(u) != 0 {
			t.Fatalf("a failed Put left incomplete multipart uploads: %v", u)
		}
	})

	t.Run("a failed small put leaves nothing", func(t *testing.T) {
		_, err := st.Put(ctx, "atomic/small", &failingReader{strings.NewReader("abc"), errors.New("boom")})
		if err == nil {
			t.Fatal("Put succeeded")
		}
		if _, err := st.Get(ctx, "atomic/small", 0); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("object exists after a failed Put: %v", err)
		}
	})

	t.Run("cancelled context aborts the upload", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() { _, err := st.Put(cctx, "cancel/obj", pr); done <- err }()
		go func() { _, _ = pw.Write(randomBytes(t, MinPartSize+1)) }()
		waitFor(t, func() bool { return len(srv.incomplete(t)) == 1 })
		cancel()
		pw.Close()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("Put after cancel: %v, want context.Canceled", err)
		}
		if _, err := st.Get(ctx, "cancel/obj", 0); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("object exists after a cancelled Put: %v", err)
		}
		if u := srv.incomplete(t); len(u) != 0 {
			t.Fatalf("a cancelled Put left incomplete multipart uploads: %v", u)
		}
	})

	t.Run("objects larger than the part limit fail instead of being truncated", func(t *testing.T) {
		small := srv.store(t, srv.options(""))
		small.maxParts = 2
		fits := randomBytes(t, 2*MinPartSize)
		if _, err := small.Put(ctx, "big/fits", bytes.NewReader(fits)); err != nil {
			t.Fatalf("an object of exactly maxParts parts: %v", err)
		}
		_, err := small.Put(ctx, "big/too", bytes.NewReader(randomBytes(t, 2*MinPartSize+1)))
		if err == nil || !strings.Contains(err.Error(), "raise part_size") {
			t.Fatalf("Put of one byte too many: %v, want an error naming part_size", err)
		}
		if _, err := st.Get(ctx, "big/too", 0); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("a truncated object was stored: %v", err)
		}
		if u := srv.incomplete(t); len(u) != 0 {
			t.Fatalf("left incomplete multipart uploads: %v", u)
		}
	})

	t.Run("concurrent puts", func(t *testing.T) {
		var wg sync.WaitGroup
		data := map[string][]byte{}
		for i := range 4 {
			data[fmt.Sprintf("conc/%d", i)] = randomBytes(t, MinPartSize+i*1000)
		}
		errs := make(chan error, len(data))
		for k, d := range data {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := st.Put(ctx, k, bytes.NewReader(d))
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		for k, d := range data {
			if !bytes.Equal(get(t, st, k, 0), d) {
				t.Errorf("%s differs", k)
			}
		}
	})
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitIAM waits until MinIO answers an unknown access key as unknown: /minio/health/ready
// reports ready before its IAM sub-system has loaded, and until then it answers such a key
// with "IAM sub-system not initialized yet" (a CI run failed on that).
func (srv *server) waitIAM(t *testing.T) {
	t.Helper()
	c, err := minio.New(srv.m.Endpoint, &minio.Options{Creds: credentials.NewStaticV4("nobody", "nobody-secret", ""),
		Transport: &http.Transport{Proxy: nil}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		_, err := c.ListBuckets(context.Background())
		return minio.ToErrorResponse(err).Code == "InvalidAccessKeyId"
	})
}

func TestStoreErrorsNameTheSinkAndHideTheSecret(t *testing.T) {
	srv := startServer(t)
	srv.waitIAM(t)
	ctx := context.Background()
	const wrongSecret = "wrong-secret-value-do-not-print"
	closed := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	for _, tc := range []struct {
		name string
		mod  func(*Options)
		want string
	}{
		{"wrong secret", func(o *Options) { o.SecretAccessKey = wrongSecret }, "check secret_access_key"},
		{"unknown access key", func(o *Options) { o.AccessKeyID = "nobody"; o.SecretAccessKey = wrongSecret }, "check access_key_id"},
		{"missing bucket", func(o *Options) { o.Bucket = "no-such-bucket" }, `bucket "no-such-bucket" does not exist`},
		{"unreachable endpoint", func(o *Options) { o.Endpoint = closed; o.MaxRetries = 2; o.SecretAccessKey = wrongSecret }, "cannot reach " + closed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opt := srv.options("")
			tc.mod(&opt)
			st := srv.store(t, opt)
			var errs []error
			_, err := st.Put(ctx, "a/b", strings.NewReader("data"))
			errs = append(errs, err)
			_, err = st.Put(ctx, "a/big", bytes.NewReader(randomBytes(t, MinPartSize+1)))
			errs = append(errs, err)
			_, err = st.Get(ctx, "a/b", 0)
			errs = append(errs, err)
			errs = append(errs, st.List(ctx, "a/", func(string, int64) error { return nil }))
			t.Logf("Put error: %v", errs[0])
			for i, err := range errs {
				if err == nil {
					t.Fatalf("call %d succeeded", i)
				}
				msg := err.Error()
				if !strings.Contains(msg, `s3 sink "spaces"`) || !strings.Contains(msg, tc.want) {
					t.Errorf("call %d: error %q should name the sink and say %q", i, msg, tc.want)
				}
				if strings.Contains(msg, wrongSecret) || strings.Contains(msg, srv.m.SecretKey) {
					t.Errorf("call %d: error contains the secret: %q", i, msg)
				}
			}
		})
	}
}

// BenchmarkStorePut streams 64 MiB of unknown size into MinIO with the default 16 MiB
// parts; bench/30-s3.sh compares the same path with bare minio-go and measures RSS.
func BenchmarkStorePut(b *testing.B) {
	srv := startServer(b)
	opt := srv.options("")
	opt.PartSize = 0
	st := srv.store(b, opt)
	block := randomBytes(b, 1<<20)
	const size = 64 << 20
	b.SetBytes(size)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r := io.LimitReader(repeatReader(block), size)
		if _, err := st.Put(context.Background(), fmt.Sprintf("bench/%d", i), r); err != nil {
			b.Fatal(err)
		}
	}
}

type repeatReader []byte

func (r repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		n += copy(p[n:], r)
	}
	return n, nil
}
