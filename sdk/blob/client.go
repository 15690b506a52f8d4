package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"

	"github.com/nightjar-backup/nightjar/sdk/blob/blobpb"
)

// Client is the host side of blob.v1: a Store whose objects live in a plugin process. It
// also describes and configures the plugin. nightjar's plugin host uses it; plugin authors
// use it through blobtest.
type Client struct {
	rpc blobpb.StoreClient

	ring *Ring // the plugin's data ring, if it was started with one

	mu       sync.Mutex
	checksum *blobpb.Checksum // the Put checksum, once a Describe has told what the plugin verifies
	ringOK   bool             // the plugin reads Put data from the ring (its Describe says so)
}

// NewClient wraps a blob.v1 gRPC client.
func NewClient(rpc blobpb.StoreClient) *Client { return &Client{rpc: rpc} }

var _ Store = (*Client)(nil)

// Describe asks the plugin who it is and which config keys it takes.
func (c *Client) Describe(ctx context.Context) (Description, error) {
	r, err := c.rpc.Describe(ctx, &blobpb.DescribeRequest{})
	if err != nil {
		return Description{}, fmt.Errorf("describe: %w", fromStatus(err))
	}
	cs := blobpb.Checksum_CHECKSUM_SHA256
	if slices.Contains(r.GetPutChecksums(), blobpb.Checksum_CHECKSUM_CRC32C) {
		cs = blobpb.Checksum_CHECKSUM_CRC32C
	}
	c.mu.Lock()
	if c.checksum == nil {
		c.checksum = &cs
	}
	c.ringOK = r.GetPutRing()
	c.mu.Unlock()
	d, err := describeFromWire(r)
	if err != nil {
		return d, fmt.Errorf("describe: %w", err)
	}
	return d, nil
}

// Configure sends the sink's config; keys listed in secret travel in the secrets map.
func (c *Client) Configure(ctx context.Context, sink string, values map[string]any, secret map[string]bool) error {
	req := &blobpb.ConfigureRequest{SinkName: sink, Config: map[string]*blobpb.Value{}, Secrets: map[string]string{}}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := values[k]
		if secret[k] {
			s, ok := v.(string)
			if !ok {
				return fmt.Errorf("configure: secret key %q is not a string", k)
			}
			req.Secrets[k] = s
			continue
		}
		wv, err := valueToWire(v)
		if err != nil {
			return fmt.Errorf("configure: key %q: %w", k, err)
		}
		req.Config[k] = wv
	}
	if _, err := c.rpc.Configure(ctx, req); err != nil {
		return fmt.Errorf("configure: %w", fromStatus(err))
	}
	return nil
}

// putMode is the checksum Put's trailers carry (CRC32C when the plugin's Describe lists
// it, else sha256, which every plugin verifies) and whether the data may go in the ring.
// It asks Describe once if nobody has yet.
func (c *Client) putMode(ctx context.Context) (blobpb.Checksum, bool, error) {
	c.mu.Lock()
	cs, ring := c.checksum, c.ringOK
	c.mu.Unlock()
	if cs != nil {
		return *cs, ring, nil
	}
	if _, err := c.Describe(ctx); err != nil {
		return 0, false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return *c.checksum, c.ringOK, nil
}

// Put streams r to the plugin in chunks of at most ChunkSize, then a trailer with the size
// and a checksum (CRC32C, or sha256 for plugins built with an older SDK); the plugin stores
// the object only if they match. An error from r cancels the stream, so the plugin stores
// nothing.
//
// CRC32C rather than sha256 because the checksum guards against a cut or mangled stream,
// not against an attacker: the channel is mutually authenticated TLS (AEAD), the host
// already keeps the sha256 of the stored bytes in the manifest (checked by verify and
// restore), and a plugin could store anything it likes whatever the trailer says. CRC32C
// runs in hardware at several GB/s; two more sha256 passes cost a third of a core.
//
// When the plugin reads the data ring and no other Put is using it, the data goes through
// the ring (see ring.go); otherwise in chunk messages on the stream.
func (c *Client) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	if err := ValidateKey(key); err != nil {
		return 0, err
	}
	cs, ringOK, err := c.putMode(ctx)
	if err != nil {
		return 0, fmt.Errorf("put %s: %w", key, err)
	}
	if ringOK && c.ring.take() {
		defer c.ring.mu.Unlock()
		return c.putRing(ctx, key, r, cs)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.Put(ctx)
	if err != nil {
		return 0, fmt.Errorf("put %s: %w", key, fromStatus(err))
	}
	if err := stream.Send(&blobpb.PutRequest{Msg: &blobpb.PutRequest_Header{Header: &blobpb.PutHeader{Key: key, Checksum: cs}}}); err != nil {
		return 0, c.putFailed(stream, key, err)
	}
	sum := newPutSum(cs)
	buf := make([]byte, ChunkSize)
	var n int64
	for {
		k, rerr := io.ReadFull(r, buf)
		if k > 0 {
			sum.Write(buf[:k])
			n += int64(k)
			// Send serialises the message before it returns (no stats handler keeps it), so
			// buf can be reused.
			if err := stream.Send(&blobpb.PutRequest{Msg: &blobpb.PutRequest_Chunk{Chunk: buf[:k]}}); err != nil {
				return n, c.putFailed(stream, key, err)
			}
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			cancel() // the plugin sees a cancelled stream and stores nothing
			return n, fmt.Errorf("put %s: read: %w", key, rerr)
		}
	}
	trailer := &blobpb.PutTrailer{Size: n}
	sum.seal(trailer)
	if err := stream.Send(&blobpb.PutRequest{Msg: &blobpb.PutRequest_Trailer{Trailer: trailer}}); err != nil {
		return n, c.putFailed(stream, key, err)
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return n, fmt.Errorf("put %s: %w", key, fromStatus(err))
	}
	if resp.GetSize() != n {
		return n, fmt.Errorf("put %s: the plugin stored %d bytes, %d were sent", key, resp.GetSize(), n)
	}
	return n, nil
}

// errAnsweredEarly stops a ring Put whose plugin answered before the data ended.
var errAnsweredEarly = errors.New("the plugin answered before the data ended")

// readSummed is io.ReadFull that adds each read to sum as soon as it lands, while it is
// still in the cache. Unlike io.ReadFull it reports an io.EOF that comes with the last
// bytes as io.ErrUnexpectedEOF even when b is full; its caller ends the data on either.
func readSummed(r io.Reader, b []byte, sum *putSum) (int, error) {
	n := 0
	for n < len(b) {
		k, err := r.Read(b[n:])
		sum.Write(b[n : n+k])
		n += k
		if err != nil {
			if errors.Is(err, io.EOF) && n > 0 {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
	}
	return n, nil
}

// putRing is Put with the data in the ring, which the caller holds.
func (c *Client) putRing(ctx context.Context, key string, r io.Reader, cs blobpb.Checksum) (int64, error) {
	g := c.ring
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.Put(ctx)
	if err != nil {
		return 0, fmt.Errorf("put %s: %w", key, fromStatus(err))
	}
	g.seq++
	seq := g.seq
	if err := stream.Send(&blobpb.PutRequest{Msg: &blobpb.PutRequest_Header{Header: &blobpb.PutHeader{Key: key, Checksum: cs, RingSeq: seq}}}); err != nil {
		return 0, c.putFailed(stream, key, err)
	}
	// The plugin answers early when its store fails; watch for that while sending.
	resp := new(blobpb.PutResponse)
	var answerErr error
	answered := make(chan struct{})
	go func() {
		answerErr = stream.RecvMsg(resp)
		close(answered)
	}()
	stopGuard := g.guard(ctx, answered)
	sum := newPutSum(cs)
	var n int64
	var failed error // why the data did not reach its end
	for failed == nil {
		select {
		case <-answered:
			failed = errAnsweredEarly
			continue
		default:
		}
		if failed = ctx.Err(); failed != nil {
			break
		}
		slot, err := g.slot()
		if err != nil {
			failed = err
			break
		}
		k, rerr := readSummed(r, slot, sum)
		if k > 0 {
			n += int64(k)
			if err := g.send(seq, uint32(k)); err != nil {
				failed = err
				break
			}
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			failed = fmt.Errorf("read: %w", rerr)
		}
	}
	end := uint32(lenEnd)
	if failed != nil {
		end = lenAbort
	}
	if !g.broken {
		if err := g.send(seq, end); err != nil && failed == nil {
			failed = err
		}
	}
	stopGuard()
	if failed != nil {
		if errors.Is(failed, errAnsweredEarly) || errors.Is(failed, errRing) {
			// The plugin's answer, if it has come, says why better than the ring does.
			select {
			case <-answered:
				if answerErr != nil {
					failed = fromStatus(answerErr)
				}
			default:
			}
		}
		cancel() // the plugin sees a cancelled stream and stores nothing
		return n, fmt.Errorf("put %s: %w", key, failed)
	}
	trailer := &blobpb.PutTrailer{Size: n}
	sum.seal(trailer)
	if err := stream.Send(&blobpb.PutRequest{Msg: &blobpb.PutRequest_Trailer{Trailer: trailer}}); err != nil && !errors.Is(err, io.EOF) {
		return n, fmt.Errorf("put %s: %w", key, fromStatus(err))
	}
	stream.CloseSend()
	<-answered
	if answerErr != nil {
		return n, fmt.Errorf("put %s: %w", key, fromStatus(answerErr))
	}
	if resp.GetSize() != n {
		return n, fmt.Errorf("put %s: the plugin stored %d bytes, %d were sent", key, resp.GetSize(), n)
	}
	return n, nil
}

// putFailed fetches the stream's real status: Send reports only io.EOF when the server has
// already ended the call.
func (c *Client) putFailed(stream blobpb.Store_PutClient, key string, sendErr error) error {
	if errors.Is(sendErr, io.EOF) {
		if _, err := stream.CloseAndRecv(); err != nil {
			return fmt.Errorf("put %s: %w", key, fromStatus(err))
		}
	}
	return fmt.Errorf("put %s: %w", key, fromStatus(sendErr))
}

// Get streams key from offset. A missing key is reported here, not on the first Read.
func (c *Client) Get(ctx context.Context, key string, offset int64) (io.ReadCloser, error) {
	if offset < 0 {
		return nil, fmt.Errorf("get %s: negative offset %d", key, offset)
	}
	ctx, cancel := context.WithCancel(ctx)
	stream, err := c.rpc.Get(ctx, &blobpb.GetRequest{Key: key, Offset: offset})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("get %s: %w", key, fromStatus(err))
	}
	gr := &getReader{key: key, stream: stream, cancel: cancel}
	msg, err := stream.Recv()
	switch {
	case errors.Is(err, io.EOF):
		gr.err = io.EOF
	case err != nil:
		cancel()
		return nil, fmt.Errorf("get %s: %w", key, fromStatus(err))
	default:
		gr.buf = msg.GetChunk()
	}
	return gr, nil
}

type getReader struct {
	key    string
	stream blobpb.Store_GetClient
	cancel context.CancelFunc
	buf    []byte
	err    error
}

func (g *getReader) Read(p []byte) (int, error) {
	for len(g.buf) == 0 {
		if g.err != nil {
			return 0, g.err
		}
		msg, err := g.stream.Recv()
		switch {
		case errors.Is(err, io.EOF):
			g.err = io.EOF
		case err != nil:
			g.err = fmt.Errorf("get %s: %w", g.key, fromStatus(err))
		default:
			g.buf = msg.GetChunk()
		}
	}
	k := copy(p, g.buf)
	g.buf = g.buf[k:]
	return k, nil
}

func (g *getReader) Close() error {
	g.cancel()
	return nil
}

// List streams the keys below prefix; an error from fn stops the listing.
func (c *Client) List(ctx context.Context, prefix string, fn func(key string, size int64) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.List(ctx, &blobpb.ListRequest{Prefix: prefix})
	if err != nil {
		return fmt.Errorf("list %q: %w", prefix, fromStatus(err))
	}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list %q: %w", prefix, fromStatus(err))
		}
		for _, e := range msg.GetEntries() {
			if err := fn(e.GetKey(), e.GetSize()); err != nil {
				return err
			}
		}
	}
}

// Delete removes key.
func (c *Client) Delete(ctx context.Context, key string) error {
	if _, err := c.rpc.Delete(ctx, &blobpb.DeleteRequest{Key: key}); err != nil {
		return fmt.Errorf("delete %s: %w", key, fromStatus(err))
	}
	return nil
}
