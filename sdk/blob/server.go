package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/nightjar-backup/nightjar/sdk/blob/blobpb"
)

// server is the plugin side of blob.v1 on top of a Store.
type server struct {
	blobpb.UnimplementedStoreServer
	store      Store
	configured atomic.Bool
	versions   []int
	ring       *ringIn // the data ring nightjar passed, if any
}

func newServer(store Store, versions []int, ring *ringIn) *server {
	s := &server{store: store, versions: versions, ring: ring}
	if _, ok := store.(Configurable); !ok {
		s.configured.Store(true)
	}
	return s
}

func (s *server) ready() error {
	if !s.configured.Load() {
		return fmt.Errorf("%w: Configure must be called first", errNotConfigured)
	}
	return nil
}

func (s *server) Describe(context.Context, *blobpb.DescribeRequest) (*blobpb.DescribeResponse, error) {
	var d Description
	if ds, ok := s.store.(Describer); ok {
		d = ds.Describe()
	}
	d.ProtocolVersions = s.versions
	r, err := describeToWire(d)
	if r != nil {
		r.PutChecksums = []blobpb.Checksum{blobpb.Checksum_CHECKSUM_CRC32C}
		r.PutRing = s.ring != nil
	}
	return r, toStatus(err)
}

func (s *server) Configure(ctx context.Context, req *blobpb.ConfigureRequest) (*blobpb.ConfigureResponse, error) {
	cfg := Config{Sink: req.GetSinkName(), values: map[string]any{}, secrets: map[string]bool{}}
	for k, v := range req.GetConfig() {
		val, err := valueFromWire(v)
		if err != nil {
			return nil, toStatus(fmt.Errorf("%w: config key %q: %v", errInvalid, k, err))
		}
		cfg.values[k] = val
	}
	for k, v := range req.GetSecrets() {
		cfg.values[k] = v
		cfg.secrets[k] = true
	}
	if c, ok := s.store.(Configurable); ok {
		if err := c.Configure(ctx, cfg); err != nil {
			return nil, toStatus(err)
		}
	}
	s.configured.Store(true)
	return &blobpb.ConfigureResponse{}, nil
}

func (s *server) Put(stream blobpb.Store_PutServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	h := first.GetHeader()
	if h == nil {
		return toStatus(fmt.Errorf("%w: put: the first message must be a header", errInvalid))
	}
	r := &putReader{stream: stream}
	if seq := h.GetRingSeq(); seq != 0 {
		// From here on the Put's messages are read to their end, whatever happens to the
		// Put, so that the next Put finds the ring in step.
		if s.ring == nil {
			return toStatus(fmt.Errorf("%w: put: the data is in the ring, but this plugin has none", errInvalid))
		}
		if err := s.ring.acquire(stream.Context(), seq); err != nil {
			return toStatus(err)
		}
		r.ring, r.seq = s.ring, seq
		defer r.releaseRing()
	}
	if err := s.ready(); err != nil {
		return toStatus(err)
	}
	key := h.GetKey()
	if err := ValidateKey(key); err != nil {
		return toStatus(fmt.Errorf("%w: %v", errInvalid, err))
	}
	cs := h.GetChecksum()
	if cs != blobpb.Checksum_CHECKSUM_SHA256 && cs != blobpb.Checksum_CHECKSUM_CRC32C {
		return toStatus(fmt.Errorf("%w: put %s: unknown checksum %v", errInvalid, key, cs))
	}
	r.sum = newPutSum(cs)
	n, err := s.store.Put(stream.Context(), key, r)
	if err != nil {
		return toStatus(err)
	}
	if !r.verified {
		// The store returned success without reading to the end: a broken store. The object
		// may be visible already; remove it so nothing unverified stays.
		_ = s.store.Delete(context.WithoutCancel(stream.Context()), key)
		return toStatus(fmt.Errorf("put %s: the store returned before reading all data", key))
	}
	if n != r.n {
		return toStatus(fmt.Errorf("put %s: the store reports %d bytes, %d were received", key, n, r.n))
	}
	return stream.SendAndClose(&blobpb.PutResponse{Size: n})
}

// putReader feeds a Put stream's chunks to Store.Put. It returns io.EOF only after the
// trailer has arrived and matches the data, so a store that commits at EOF (as atomic stores
// do) never makes an unverified object visible.
type putReader struct {
	stream   blobpb.Store_PutServer
	ring     *ringIn // with the data in the ring
	seq      uint64
	ringDone bool // the Put's messages have been read to their end (or the ring failed)
	buf      []byte
	sum      *putSum // of the bytes handed to the store
	n        int64
	verified bool
	err      error
}

func (r *putReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		r.err = r.next()
	}
	k := copy(p, r.buf)
	r.sum.Write(p[:k])
	r.buf = r.buf[k:]
	return k, nil
}

// handPiece is the most WriteTo hands to the store at once. Each piece is checksummed
// just before the store's write reads it, so the write finds it in the cache; the
// checksum of a whole 1 MiB chunk first, then its write, read it from memory twice.
const handPiece = 256 << 10

// WriteTo hands the data to w in pieces of handPiece, so io.Copy into a file makes a few
// large writes per chunk.
func (r *putReader) WriteTo(w io.Writer) (int64, error) {
	var n int64
	for {
		for len(r.buf) == 0 {
			if r.err != nil {
				if errors.Is(r.err, io.EOF) {
					return n, nil
				}
				return n, r.err
			}
			r.err = r.next()
		}
		piece := r.buf[:min(len(r.buf), handPiece)]
		r.sum.Write(piece)
		k, err := w.Write(piece)
		n += int64(k)
		r.buf = r.buf[k:]
		if err != nil {
			return n, err
		}
	}
}

func (r *putReader) next() error {
	if r.ring != nil && !r.ringDone {
		b, err := r.ring.next(r.seq)
		if err == nil {
			r.n += int64(len(b))
			r.buf = b
			return nil
		}
		r.ringDone = true
		if !errors.Is(err, io.EOF) {
			return fmt.Errorf("put: %w", err)
		}
		// The data has ended; the trailer follows on the stream.
	}
	msg, err := r.stream.Recv()
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: put: the stream ended without a trailer; nothing stored", errInvalid)
	}
	if err != nil {
		return fmt.Errorf("put: receive: %w", err)
	}
	switch m := msg.GetMsg().(type) {
	case *blobpb.PutRequest_Chunk:
		if r.ring != nil {
			return fmt.Errorf("%w: put: a chunk message, but the data is in the ring", errInvalid)
		}
		if len(m.Chunk) > ChunkSize {
			return fmt.Errorf("%w: put: chunk of %d bytes exceeds %d", errInvalid, len(m.Chunk), ChunkSize)
		}
		r.n += int64(len(m.Chunk))
		r.buf = m.Chunk
		return nil
	case *blobpb.PutRequest_Trailer:
		if m.Trailer.GetSize() != r.n {
			return fmt.Errorf("%w: put: trailer says %d bytes, %d were received; nothing stored", errInvalid, m.Trailer.GetSize(), r.n)
		}
		if !r.sum.matches(m.Trailer) {
			return fmt.Errorf("%w: put: %s of the received data does not match the trailer; nothing stored", errInvalid, r.sum)
		}
		r.verified = true
		return io.EOF
	}
	return fmt.Errorf("%w: put: unexpected message after the header", errInvalid)
}

// releaseRing gives the ring to the next Put. If the store stopped reading early (it
// failed), the rest of this Put's messages are drained first, in the background, so that
// the error reaches nightjar now and nightjar stops sending.
func (r *putReader) releaseRing() {
	if r.ringDone {
		r.ring.release()
		return
	}
	go func() {
		for {
			if _, err := r.ring.next(r.seq); err != nil {
				break
			}
		}
		r.ring.release()
	}()
}

func (s *server) Get(req *blobpb.GetRequest, stream blobpb.Store_GetServer) error {
	if err := s.ready(); err != nil {
		return toStatus(err)
	}
	if req.GetOffset() < 0 {
		return toStatus(fmt.Errorf("%w: get %s: negative offset %d", errInvalid, req.GetKey(), req.GetOffset()))
	}
	rc, err := s.store.Get(stream.Context(), req.GetKey(), req.GetOffset())
	if err != nil {
		return toStatus(err)
	}
	defer rc.Close()
	buf := make([]byte, ChunkSize)
	for {
		n, err := io.ReadFull(rc, buf)
		if n > 0 {
			// Send serialises the message before it returns and no stats handler keeps it,
			// so buf can be reused.
			if serr := stream.Send(&blobpb.GetResponse{Chunk: buf[:n]}); serr != nil {
				return serr
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil
		}
		if err != nil {
			return toStatus(fmt.Errorf("get %s: %w", req.GetKey(), err))
		}
	}
}

// listBatch is how many entries one List message carries.
const listBatch = 500

func (s *server) List(req *blobpb.ListRequest, stream blobpb.Store_ListServer) error {
	if err := s.ready(); err != nil {
		return toStatus(err)
	}
	var batch []*blobpb.ListEntry
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := stream.Send(&blobpb.ListResponse{Entries: batch})
		batch = nil
		return err
	}
	err := s.store.List(stream.Context(), req.GetPrefix(), func(key string, size int64) error {
		batch = append(batch, &blobpb.ListEntry{Key: key, Size: size})
		if len(batch) >= listBatch {
			return flush()
		}
		return nil
	})
	if err != nil {
		return toStatus(err)
	}
	return flush()
}

func (s *server) Delete(ctx context.Context, req *blobpb.DeleteRequest) (*blobpb.DeleteResponse, error) {
	if err := s.ready(); err != nil {
		return nil, toStatus(err)
	}
	if err := s.store.Delete(ctx, req.GetKey()); err != nil {
		return nil, toStatus(err)
	}
	return &blobpb.DeleteResponse{}, nil
}
