package blob

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/nightjar-backup/nightjar/sdk/blob/blobpb"
)

// failingStore keeps objects in memory; a Put of a key starting with "fail/" reads one
// byte past a slot, waits a moment (so that nightjar, filling the ring, comes to wait for
// a slot) and then fails, as a store whose disk filled up would.
type failingStore struct {
	mu   sync.Mutex
	objs map[string][]byte
}

var errDiskFull = errors.New("disk full")

func (s *failingStore) Put(_ context.Context, key string, r io.Reader) (int64, error) {
	if strings.HasPrefix(key, "fail/") {
		n, _ := io.CopyN(io.Discard, r, ChunkSize+1)
		time.Sleep(200 * time.Millisecond)
		return n, errDiskFull
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	s.objs[key] = b
	s.mu.Unlock()
	return int64(len(b)), nil
}

func (s *failingStore) Get(context.Context, string, int64) (io.ReadCloser, error) {
	return nil, ErrNotFound
}
func (s *failingStore) List(context.Context, string, func(string, int64) error) error { return nil }
func (s *failingStore) Delete(context.Context, string) error                          { return nil }

// TestRingStoreFailsWhileNightjarWaits: the store fails after nightjar has filled every
// slot and waits for one to be released. The plugin answers with the store's error and
// drains the rest of the Put, so nightjar reports that error at once and the ring stays
// usable. (Without the drain, nightjar would wait out ringGrace and close the ring.)
func TestRingStoreFailsWhileNightjarWaits(t *testing.T) {
	cmd := exec.Command("true")
	g, err := AttachRing(cmd)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	memfd, err1 := unix.Dup(int(cmd.ExtraFiles[0].Fd()))
	sock, err2 := unix.Dup(int(cmd.ExtraFiles[1].Fd()))
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	g.Started()
	in, err := ringFromFds(memfd, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer in.ctl.Close()

	store := &failingStore{objs: map[string][]byte{}}
	sockPath := filepath.Join(t.TempDir(), "s")
	lis, err := net.Listen("unix", sockPath)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(ServerOptions()...)
	blobpb.RegisterStoreServer(srv, newServer(store, []int{ProtocolVersion}, in))
	go srv.Serve(lis)
	defer srv.Stop()
	conn, err := grpc.NewClient("unix://"+sockPath, append(DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := NewClient(blobpb.NewStoreClient(conn))
	c.ring = g

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	_, err = c.Put(ctx, "fail/obj", bytes.NewReader(make([]byte, 3*ringSlots*ChunkSize)))
	if err == nil || !strings.Contains(err.Error(), errDiskFull.Error()) {
		t.Fatalf("Put into a failing store: %v, want the store's error", err)
	}
	if g.Broken() {
		t.Fatalf("the ring broke (after %v); the plugin did not drain the failed Put", time.Since(start))
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), (2*ChunkSize+3)/16)
	if n, err := c.Put(ctx, "ok/obj", bytes.NewReader(data)); err != nil || n != int64(len(data)) {
		t.Fatalf("Put after the failed one: %d, %v", n, err)
	}
	if g.Seq() != 2 {
		t.Fatalf("%d Puts used the ring, want 2", g.Seq())
	}
	if !bytes.Equal(store.objs["ok/obj"], data) {
		t.Fatalf("the store holds %d bytes, want the %d put", len(store.objs["ok/obj"]), len(data))
	}
}
