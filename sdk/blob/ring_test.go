package blob

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
)

// testRing is a plugin-side ring over a socket pair, with the memory in this process.
func testRing(t *testing.T) (in *ringIn, mem []byte, host *os.File) {
	t.Helper()
	pair, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	host, plugin := os.NewFile(uintptr(pair[0]), "host"), os.NewFile(uintptr(pair[1]), "plugin")
	t.Cleanup(func() { host.Close(); plugin.Close() })
	mem = make([]byte, 2*ChunkSize)
	return newRingIn(mem, plugin), mem, host
}

// message is one control message as nightjar writes it.
func message(seq uint64, slot, n uint32) []byte {
	b := make([]byte, msgSize)
	binary.BigEndian.PutUint64(b, seq)
	binary.BigEndian.PutUint32(b[8:], slot)
	binary.BigEndian.PutUint32(b[12:], n)
	return b
}

// TestRingMessages feeds the plugin's side of a ring with message sequences and checks
// what the Put numbered 2 reads from it and how many slots it releases.
func TestRingMessages(t *testing.T) {
	type data struct {
		slot uint32
		s    string
	}
	for _, tc := range []struct {
		name      string
		msgs      []any // data (a slot filled with s) or []byte (a raw message)
		close     bool  // nightjar closes its end after the messages
		want      string
		wantErr   string // "" for io.EOF, the end message
		wantFreed int
	}{
		{name: "data then end",
			msgs: []any{uint64(2), data{0, "abc"}, data{1, "de"}, message(2, 0, lenEnd)},
			want: "abcde", wantFreed: 2},
		{name: "messages of an earlier Put are skipped and their slots released",
			msgs: []any{uint64(1), data{0, "old"}, message(1, 0, lenAbort), data{1, "older"}, message(1, 0, lenEnd),
				uint64(2), data{0, "new"}, message(2, 0, lenEnd)},
			want: "new", wantFreed: 3},
		{name: "abort",
			msgs: []any{uint64(2), data{1, "part"}, message(2, 0, lenAbort)},
			want: "part", wantErr: errPutAborted.Error(), wantFreed: 1},
		{name: "a later Put's message",
			msgs:    []any{message(3, 0, 1)},
			wantErr: "a message of Put 3 while Put 2 reads"},
		{name: "too long",
			msgs:    []any{message(2, 0, ChunkSize+1)},
			wantErr: "a message for 1048577 bytes in slot 0"},
		{name: "no such slot",
			msgs:    []any{message(2, 2, 1)},
			wantErr: "in slot 2 (ring of 2 slots"},
		{name: "closed mid-message",
			msgs:  []any{uint64(2), data{0, "ab"}, message(2, 0, lenEnd)[:5]},
			close: true, want: "ab", wantErr: "data ring: closed by nightjar", wantFreed: 1},
		{name: "closed between messages",
			msgs:  []any{uint64(2), data{0, "ab"}},
			close: true, want: "ab", wantErr: "data ring: closed by nightjar", wantFreed: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, mem, host := testRing(t)
			wrote := make(chan struct{})
			defer func() { <-wrote }()
			go func() {
				defer close(wrote)
				var seq uint64
				for _, m := range tc.msgs {
					var b []byte
					switch m := m.(type) {
					case uint64:
						seq = m
						continue
					case data:
						copy(mem[int(m.slot)*ChunkSize:], m.s)
						b = message(seq, m.slot, uint32(len(m.s)))
					case []byte:
						b = m
					}
					if _, err := host.Write(b); err != nil {
						return
					}
				}
				if tc.close {
					syscall.Shutdown(int(host.Fd()), syscall.SHUT_WR)
				}
			}()
			if err := in.acquire(context.Background(), 2); err != nil {
				t.Fatal(err)
			}
			defer in.release()
			var got bytes.Buffer
			for {
				b, err := in.next(2)
				if err != nil {
					if tc.wantErr == "" && !errors.Is(err, io.EOF) || tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr) {
						t.Fatalf("next: %v, want %q", err, tc.wantErr)
					}
					break
				}
				got.Write(b)
			}
			if got.String() != tc.want {
				t.Fatalf("read %q, want %q", got.String(), tc.want)
			}
			syscall.Shutdown(int(in.ctl.Fd()), syscall.SHUT_WR)
			freed, err := io.ReadAll(host)
			if err != nil {
				t.Fatal(err)
			}
			if len(freed) != tc.wantFreed {
				t.Fatalf("released %d slots, want %d", len(freed), tc.wantFreed)
			}
		})
	}
}

// TestRingOvertakenPut: a Put whose turn comes after a later Put's (its messages were
// skipped) fails instead of reading the next Put's data.
func TestRingOvertakenPut(t *testing.T) {
	in, _, _ := testRing(t)
	ctx := context.Background()
	if err := in.acquire(ctx, 5); err != nil {
		t.Fatal(err)
	}
	in.release()
	for _, seq := range []uint64{4, 5} {
		if err := in.acquire(ctx, seq); err == nil || !strings.Contains(err.Error(), "came after") {
			t.Fatalf("acquire(%d) after 5 had its turn: %v, want an error", seq, err)
		}
	}
	if err := in.acquire(ctx, 6); err != nil {
		t.Fatalf("acquire(6): %v", err)
	}
	// While 6 holds the ring, 7 waits until its context ends.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := in.acquire(cctx, 7); !errors.Is(err, context.Canceled) {
		t.Fatalf("acquire while busy, cancelled: %v", err)
	}
}
