package s3

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nightjar-backup/nightjar/sdk/blob"
)

// resetProxy is a TCP proxy on 127.0.0.1 in front of MinIO that resets connections
// (RST, not a clean close) partway through what the client sends.
type resetProxy struct {
	l      net.Listener
	target string
	// cutAfter decides, for the n-th accepted connection (from 0), after how many bytes
	// from the client it is reset; < 0 never.
	cutAfter func(n int) int64
	conns    atomic.Int32
	resets   atomic.Int32
	wg       sync.WaitGroup
	mu       sync.Mutex
	open     []net.Conn // closed when the test ends, so idle keep-alive connections end
	// stall makes a cut connection go silent (neither read nor forward, never close)
	// instead of being reset.
	stall bool
	stop  chan struct{}
	// cutDown, when set, decides after how many bytes from the server the n-th connection
	// is reset (< 0 never).
	cutDown func(n int) int64
}

func startResetProxy(t *testing.T, target string, cutAfter func(n int) int64, opts ...func(*resetProxy)) *resetProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &resetProxy{l: l, target: target, cutAfter: cutAfter, stop: make(chan struct{})}
	for _, o := range opts {
		o(p)
	}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		l.Close()
		close(p.stop)
		p.mu.Lock()
		for _, c := range p.open {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *resetProxy) Addr() string { return p.l.Addr().String() }

func (p *resetProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		n := int(p.conns.Add(1) - 1)
		p.mu.Lock()
		p.open = append(p.open, c)
		p.mu.Unlock()
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			down := int64(-1)
			if p.cutDown != nil {
				down = p.cutDown(n)
			}
			p.handle(c.(*net.TCPConn), p.cutAfter(n), down)
		}()
	}
}

func (p *resetProxy) handle(client *net.TCPConn, cut, cutDown int64) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	p.mu.Lock()
	p.open = append(p.open, server)
	p.mu.Unlock()
	var once sync.Once
	reset := func() {
		once.Do(func() {
			p.resets.Add(1)
			_ = client.SetLinger(0)
			_ = server.(*net.TCPConn).SetLinger(0)
			client.Close()
			server.Close()
		})
	}
	done := make(chan struct{})
	go func() { // server → client
		defer close(done)
		if cutDown < 0 {
			_, _ = io.Copy(client, server)
			return
		}
		_, _ = io.Copy(client, io.LimitReader(server, cutDown))
		reset()
	}()
	var sent int64
	buf := make([]byte, 32<<10)
	for {
		n, rerr := client.Read(buf)
		if cut >= 0 && sent+int64(n) > cut {
			_, _ = server.Write(buf[:cut-sent])
			if p.stall {
				// Silence both ways: MinIO goes away, the client hears nothing, not even a FIN.
				p.resets.Add(1)
				server.Close()
				<-p.stop
			}
			reset()
			<-done
			return
		}
		if n > 0 {
			if _, err := server.Write(buf[:n]); err != nil {
				break
			}
			sent += int64(n)
		}
		if rerr != nil {
			break
		}
	}
	server.Close()
	client.Close()
	<-done
}

func TestPutSurvivesConnectionResets(t *testing.T) {
	srv := startServer(t)
	ctx := context.Background()
	// The first three connections die after 1.5 MiB, in the middle of a part; small
	// requests (start, complete, stat) fit below that and pass.
	proxy := startResetProxy(t, srv.m.Endpoint, func(n int) int64 {
		if n < 3 {
			return 3 << 19
		}
		return -1
	})
	st := srv.store(t, srv.options(proxy.Addr()))
	data := randomBytes(t, 4*MinPartSize+999)
	n, err := st.Put(ctx, "resets/obj", bytes.NewReader(data))
	if err != nil {
		t.Fatalf("Put through transient resets: %v", err)
	}
	if n != int64(len(data)) {
		t.Fatalf("Put returned %d, want %d", n, len(data))
	}
	if proxy.resets.Load() == 0 {
		t.Fatal("the proxy reset no connection: the test tested nothing")
	}
	// Read back through MinIO directly, not the proxy.
	direct := srv.store(t, srv.options(""))
	if got := get(t, direct, "resets/obj", 0); !bytes.Equal(got, data) {
		t.Fatalf("object differs after retried parts (%d bytes, want %d)", len(got), len(data))
	}
	t.Logf("%d connections, %d reset", proxy.conns.Load(), proxy.resets.Load())
}

// A server that stops reading in the middle of a part (no reset, no answer) must not hang
// the upload: the idle timeout fails the connection and the part is retried.
func TestPutSurvivesAStalledConnection(t *testing.T) {
	srv := startServer(t)
	proxy := startResetProxy(t, srv.m.Endpoint, func(n int) int64 {
		if n == 0 {
			return 1 << 20
		}
		return -1
	}, func(p *resetProxy) { p.stall = true })
	opt := srv.options(proxy.Addr())
	opt.Transport = nil // the store's own transport, with its idle timeout
	opt.IdleTimeout = time.Second
	st := srv.store(t, opt)
	data := randomBytes(t, 2*MinPartSize+1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := st.Put(ctx, "stall/obj", bytes.NewReader(data)); err != nil {
		t.Fatalf("Put through a stalled connection: %v", err)
	}
	if proxy.resets.Load() != 1 {
		t.Fatalf("%d connections stalled, want 1", proxy.resets.Load())
	}
	if got := get(t, st, "stall/obj", 0); !bytes.Equal(got, data) {
		t.Fatal("object differs")
	}
}

func TestPutFailsCleanlyWhenResetsPersist(t *testing.T) {
	srv := startServer(t)
	ctx := context.Background()
	// Every connection dies once it has carried 1.5 MiB: parts never get through, small
	// requests (including the abort) do.
	proxy := startResetProxy(t, srv.m.Endpoint, func(int) int64 { return 3 << 19 })
	opt := srv.options(proxy.Addr())
	opt.MaxRetries = 3
	st := srv.store(t, opt)
	_, err := st.Put(ctx, "dead/obj", bytes.NewReader(randomBytes(t, 2*MinPartSize+1)))
	if err == nil {
		t.Fatal("Put succeeded although every upload connection was reset")
	}
	t.Logf("error: %v", err)
	if !strings.Contains(err.Error(), `s3 sink "spaces"`) {
		t.Errorf("error does not name the sink: %v", err)
	}
	if _, err := st.Get(ctx, "dead/obj", 0); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("an object is visible after a failed Put: %v", err)
	}
	if u := srv.incomplete(t); len(u) != 0 {
		t.Fatalf("the failed multipart upload was not aborted: %v", u)
	}
}

// failingHTTPProxy answers 503 to upload requests (PUT) while fail() says so, after reading
// their body, and forwards everything else to MinIO.
func failingHTTPProxy(t *testing.T, target string, fail func() bool) (addr string, failed *atomic.Int32) {
	t.Helper()
	u, _ := url.Parse("http://" + target)
	rp := httputil.NewSingleHostReverseProxy(u) // keeps the Host header, so signatures hold
	rp.Transport = &http.Transport{Proxy: nil}
	failed = &atomic.Int32{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && fail() {
			failed.Add(1)
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`)
			return
		}
		rp.ServeHTTP(w, r)
	})}
	go func() { _ = hs.Serve(l) }()
	t.Cleanup(func() { hs.Close() })
	return l.Addr().String(), failed
}

func TestPutRetriesServerErrors(t *testing.T) {
	srv := startServer(t)
	ctx := context.Background()
	var puts atomic.Int32
	// Every other upload request fails with 503 SlowDown.
	addr, failed := failingHTTPProxy(t, srv.m.Endpoint, func() bool { return puts.Add(1)%2 == 1 })
	st := srv.store(t, srv.options(addr))
	for _, size := range []int{100, 3*MinPartSize + 5} {
		data := randomBytes(t, size)
		if _, err := st.Put(ctx, "5xx/obj", bytes.NewReader(data)); err != nil {
			t.Fatalf("Put of %d bytes through 503s: %v", size, err)
		}
		if got := get(t, st, "5xx/obj", 0); !bytes.Equal(got, data) {
			t.Fatalf("object of %d bytes differs after retries", size)
		}
	}
	if failed.Load() == 0 {
		t.Fatal("no request was failed: the test tested nothing")
	}

	// When the server keeps failing, Put gives up after its retries and leaves nothing.
	addr, _ = failingHTTPProxy(t, srv.m.Endpoint, func() bool { return true })
	opt := srv.options(addr)
	opt.MaxRetries = 2
	st = srv.store(t, opt)
	_, err := st.Put(ctx, "5xx/never", bytes.NewReader(randomBytes(t, MinPartSize+1)))
	if err == nil {
		t.Fatal("Put succeeded against a server that always fails")
	}
	t.Logf("error: %v", err)
	if _, err := st.Get(ctx, "5xx/never", 0); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("an object is visible after a failed Put: %v", err)
	}
	if u := srv.incomplete(t); len(u) != 0 {
		t.Fatalf("the failed multipart upload was not aborted: %v", u)
	}
}

// When the server completes a multipart upload but the answer is lost, minio-go retries the
// completion and the server answers NoSuchUpload: Put must recognise its own object.
func TestPutWhenTheCompletionAnswerIsLost(t *testing.T) {
	srv := startServer(t)
	ctx := context.Background()
	u, _ := url.Parse("http://" + srv.m.Endpoint)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{Proxy: nil}
	var dropped atomic.Int32
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		complete := r.Method == http.MethodPost && r.URL.Query().Has("uploadId")
		if !complete || dropped.Load() > 0 {
			rp.ServeHTTP(w, r)
			return
		}
		// Forward the completion, then cut the connection instead of answering.
		rec := &discardWriter{h: http.Header{}}
		rp.ServeHTTP(rec, r)
		dropped.Add(1)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_ = conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
		}
	})}
	go func() { _ = hs.Serve(l) }()
	t.Cleanup(func() { hs.Close() })

	st := srv.store(t, srv.options(l.Addr().String()))
	data := randomBytes(t, 2*MinPartSize+3)
	if _, err := st.Put(ctx, "lost/obj", bytes.NewReader(data)); err != nil {
		t.Fatalf("Put after a lost completion answer: %v", err)
	}
	if dropped.Load() != 1 {
		t.Fatalf("dropped %d completion answers, want 1", dropped.Load())
	}
	if got := get(t, st, "lost/obj", 0); !bytes.Equal(got, data) {
		t.Fatal("object differs")
	}
}

type discardWriter struct {
	h    http.Header
	code int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(code int)        { d.code = code }

// A download cut in the middle resumes with a range request from where it stopped.
func TestGetResumesAfterAReset(t *testing.T) {
	srv := startServer(t)
	ctx := context.Background()
	data := randomBytes(t, 3*MinPartSize+17)
	direct := srv.store(t, srv.options(""))
	if _, err := direct.Put(ctx, "dl/obj", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	// The first three connections die after 4 MiB from the server.
	proxy := startResetProxy(t, srv.m.Endpoint, func(int) int64 { return -1 }, func(p *resetProxy) {
		p.cutDown = func(n int) int64 {
			if n < 3 {
				return 4 << 20
			}
			return -1
		}
	})
	st := srv.store(t, srv.options(proxy.Addr()))
	for _, off := range []int64{0, 1000} {
		got := get(t, st, "dl/obj", off)
		if !bytes.Equal(got, data[off:]) {
			t.Fatalf("offset %d: read %d bytes that differ from the %d stored", off, len(got), len(data)-int(off))
		}
	}
	if proxy.resets.Load() == 0 {
		t.Fatal("no download was cut: the test tested nothing")
	}

	// When resuming keeps failing (every later connection dies before its answer), the
	// read gives up with an error naming the sink.
	proxy2 := startResetProxy(t, srv.m.Endpoint, func(int) int64 { return -1 }, func(p *resetProxy) {
		p.cutDown = func(n int) int64 {
			if n == 0 {
				return 1 << 20
			}
			return 100
		}
	})
	opt := srv.options(proxy2.Addr())
	opt.MaxRetries = 2
	rc, err := srv.store(t, opt).Get(ctx, "dl/obj", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	n, err := io.Copy(io.Discard, rc)
	if err == nil || !strings.Contains(err.Error(), `s3 sink "spaces"`) {
		t.Fatalf("read through a proxy that always cuts: %d bytes, err %v", n, err)
	}
	t.Logf("error: %v", err)
}
