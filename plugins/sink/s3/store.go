package s3

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/nightjar-backup/nightjar/sdk/blob"
)

// S3 limits (the same on AWS, DigitalOcean Spaces and MinIO).
const (
	MinPartSize     = 5 << 20  // smallest part S3 accepts (all but the last)
	MaxPartSize     = 5 << 30  // largest part S3 accepts
	MaxParts        = 10000    // parts per multipart upload
	DefaultPartSize = 16 << 20 // what a Put buffers per part
	// DefaultMaxRetries is how many times one request (one part, one small object, a
	// listing page) is tried on a transient failure: a 5xx, a reset, a timeout.
	DefaultMaxRetries = 5
)

// Options configures a Store.
type Options struct {
	Name            string // the sink's name, used in every error
	Endpoint        string // host[:port], no scheme
	Secure          bool   // HTTPS
	Region          string // "" asks the server
	Bucket          string
	Prefix          string // prepended to every key as is, e.g. "nightly/"
	AccessKeyID     string
	SecretAccessKey string
	StorageClass    string
	PartSize        int64 // 0: DefaultPartSize
	MaxRetries      int   // 0: DefaultMaxRetries
	// IdleTimeout fails a connection on which nothing was sent or received for this long
	// (a server that stops reading or answering); the request is then retried. 0: 2 minutes.
	IdleTimeout time.Duration
	// Transport replaces the HTTP transport (tests); nil builds one with timeouts.
	Transport http.RoundTripper
}

// Store is a blob.Store in an S3 bucket (AWS S3, DigitalOcean Spaces, MinIO, ...).
//
// Put streams r with a fixed part size: it holds at most two parts in memory (one being
// uploaded, one being read), whatever the object's size, and never asks minio-go to guess a
// part size (for an unknown size minio-go would buffer 528 MiB per upload). The largest
// object one Put can store is MaxParts × PartSize (156.25 GiB at 16 MiB); a larger stream
// fails with an error naming part_size instead of being truncated.
//
// Retry contract: every request is retried by minio-go up to MaxRetries times with
// exponential backoff (200 ms doubling, capped at 1 s, with jitter) on 5xx, throttling,
// connection resets and timeouts. A part is retried from the copy Put holds in memory, so a
// transient failure in the middle of a large upload costs one part, not the upload. The
// stream itself (r) is read once and can never be replayed: when a part exhausts its
// retries, Put aborts the multipart upload (no orphan parts stay billed) and fails, and the
// caller's run fails without a manifest. The next run starts over.
//
// Atomicity: an object exists only once PutObject or CompleteMultipartUpload succeeds, so
// List never sees a partial object; after completion Put compares the size the server
// reports with the bytes it sent and deletes the object on a mismatch.
type Store struct {
	opt    Options
	client *minio.Client
	core   minio.Core
	bufs   sync.Pool // part buffers, shared by concurrent Puts
	// maxParts is MaxParts; tests lower it to reach the limit with small objects.
	maxParts int
}

// NewStore returns a store; it does not contact the server (a sink that cannot be reached
// fails when used, so it fails only itself).
func NewStore(opt Options) (*Store, error) {
	if opt.Name == "" {
		opt.Name = opt.Bucket
	}
	if opt.PartSize == 0 {
		opt.PartSize = DefaultPartSize
	}
	if opt.PartSize < MinPartSize || opt.PartSize > MaxPartSize {
		return nil, fmt.Errorf("s3 sink %q: part size %d is outside S3's limits (%d to %d bytes)", opt.Name, opt.PartSize, MinPartSize, MaxPartSize)
	}
	if opt.MaxRetries <= 0 {
		opt.MaxRetries = DefaultMaxRetries
	}
	if opt.IdleTimeout <= 0 {
		opt.IdleTimeout = 2 * time.Minute
	}
	if opt.Endpoint == "" || strings.Contains(opt.Endpoint, "://") || strings.Contains(opt.Endpoint, "/") {
		return nil, fmt.Errorf("s3 sink %q: endpoint %q: expected host[:port] without scheme or path (use secure: false for plain HTTP)", opt.Name, opt.Endpoint)
	}
	tr := opt.Transport
	if tr == nil {
		tr = newTransport(opt.Secure, opt.IdleTimeout)
	}
	c, err := minio.New(opt.Endpoint, &minio.Options{
		Creds:      credentials.NewStaticV4(opt.AccessKeyID, opt.SecretAccessKey, ""),
		Secure:     opt.Secure,
		Region:     opt.Region,
		Transport:  tr,
		MaxRetries: opt.MaxRetries,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 sink %q: %s", opt.Name, redact(err.Error(), opt.SecretAccessKey))
	}
	s := &Store{opt: opt, client: c, core: minio.Core{Client: c}, maxParts: MaxParts}
	s.bufs.New = func() any { b := make([]byte, opt.PartSize); return &b }
	return s, nil
}

// newTransport is minio-go's default transport with bounded waits: a dead endpoint, or a
// server that stops reading or answering in the middle of a request, becomes an error (and
// a retry), never a hang.
func newTransport(secure bool, idle time.Duration) http.RoundTripper {
	tr, _ := minio.DefaultTransport(secure)
	dialer := &net.Dialer{Timeout: 15 * time.Second, KeepAlive: 30 * time.Second}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &idleConn{Conn: c, idle: idle}, nil
	}
	tr.ResponseHeaderTimeout = 2 * time.Minute // completing a large upload takes a while
	tr.TLSHandshakeTimeout = 15 * time.Second
	return tr
}

// idleConn fails a read or write that waits longer than idle. Every read and write pushes
// both deadlines, so a long upload keeps the pending read of its answer alive, a slow
// consumer of a download is not penalised, and a stalled peer is detected either way.
type idleConn struct {
	net.Conn
	idle time.Duration
}

func (c *idleConn) Read(p []byte) (int, error) {
	_ = c.Conn.SetDeadline(time.Now().Add(c.idle))
	return c.Conn.Read(p)
}

func (c *idleConn) Write(p []byte) (int, error) {
	_ = c.Conn.SetDeadline(time.Now().Add(c.idle))
	return c.Conn.Write(p)
}

// Client is the underlying minio-go client (tests and tools).
func (s *Store) Client() *minio.Client { return s.client }

// MaxObjectSize is the largest object one Put can store with the configured part size.
func (s *Store) MaxObjectSize() int64 { return int64(s.maxParts) * s.opt.PartSize }

func (s *Store) object(key string) (string, error) {
	if err := blob.ValidateKey(key); err != nil {
		return "", s.errorf("%w", err)
	}
	return s.opt.Prefix + key, nil
}

// Put uploads r to key: one PutObject when r fits in one part, a multipart upload
// otherwise. See Store for the memory, retry and atomicity contract.
func (s *Store) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	obj, err := s.object(key)
	if err != nil {
		return 0, err
	}
	first := s.getBuf()
	n, rerr := readFull(ctx, r, *first)
	switch {
	case rerr == io.EOF || rerr == io.ErrUnexpectedEOF:
		defer s.bufs.Put(first)
		return s.putSmall(ctx, key, obj, (*first)[:n])
	case rerr != nil:
		s.bufs.Put(first)
		return 0, s.errorf("put %s: read: %w", key, rerr)
	}
	return s.putMultipart(ctx, key, obj, r, first)
}

func (s *Store) getBuf() *[]byte { return s.bufs.Get().(*[]byte) }

// readFull is io.ReadFull that stops when ctx is done.
func readFull(ctx context.Context, r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		k, err := r.Read(buf[n:])
		n += k
		if err != nil {
			if err == io.EOF {
				if n == 0 {
					return 0, io.EOF
				}
				return n, io.ErrUnexpectedEOF
			}
			return n, err
		}
	}
	return n, nil
}

func (s *Store) putOptions() minio.PutObjectOptions {
	return minio.PutObjectOptions{
		StorageClass: s.opt.StorageClass,
		ContentType:  "application/octet-stream",
		PartSize:     uint64(s.opt.PartSize),
	}
}

// putSmall stores an object that fits in one part with a single (retryable) PutObject.
func (s *Store) putSmall(ctx context.Context, key, obj string, b []byte) (int64, error) {
	opts := s.putOptions()
	opts.DisableMultipart = true
	info, err := s.client.PutObject(ctx, s.opt.Bucket, obj, bytes.NewReader(b), int64(len(b)), opts)
	if err != nil {
		return 0, s.wrap(ctx, "put "+key, err)
	}
	if info.Size != int64(len(b)) {
		s.removeQuietly(obj)
		return 0, s.errorf("put %s: the server stored %d bytes, %d were sent; object removed", key, info.Size, len(b))
	}
	return info.Size, s.checkSize(ctx, key, obj, int64(len(b)))
}

// checkSize asks the server for the object's size and compares it with what was sent; on a
// mismatch the object is removed.
func (s *Store) checkSize(ctx context.Context, key, obj string, sent int64) error {
	st, err := s.client.StatObject(ctx, s.opt.Bucket, obj, minio.StatObjectOptions{})
	if err != nil {
		// Put is failing, so the object must not stay (best effort: the commit protocol
		// never names it, and prune removes what is left).
		s.removeQuietly(obj)
		return s.wrap(ctx, "put "+key+": check size", err)
	}
	if st.Size != sent {
		s.removeQuietly(obj)
		return s.errorf("put %s: the server reports %d bytes, %d were sent; object removed", key, st.Size, sent)
	}
	return nil
}

type partResult struct {
	part minio.CompletePart
	err  error
}

// putMultipart uploads first (a full part already read, now owned by putMultipart) and the
// rest of r. One part is uploaded while the next is read, so the source and the network
// overlap; at most two part buffers are in use.
func (s *Store) putMultipart(ctx context.Context, key, obj string, r io.Reader, first *[]byte) (total int64, err error) {
	uploadID, err := s.core.NewMultipartUpload(ctx, s.opt.Bucket, obj, s.putOptions())
	if err != nil {
		return 0, s.wrap(ctx, "put "+key+": start multipart upload", err)
	}
	inflight := make(chan partResult, 1)
	busy := false
	defer func() {
		if busy {
			<-inflight
		}
		if err != nil && uploadID != "" {
			// Abort even when ctx is cancelled, so no orphan parts stay billed.
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if aerr := s.core.AbortMultipartUpload(actx, s.opt.Bucket, obj, uploadID); aerr != nil {
				err = fmt.Errorf("%w (and aborting the multipart upload failed: %s; a bucket lifecycle rule for incomplete uploads removes its parts)", err, redact(aerr.Error(), s.opt.SecretAccessKey))
			}
		}
	}()

	var parts []minio.CompletePart
	collect := func() error {
		res := <-inflight
		busy = false
		if res.err != nil {
			return res.err
		}
		parts = append(parts, res.part)
		return nil
	}
	upload := func(num int, b []byte, buf *[]byte) {
		busy = true
		go func() {
			p, err := s.core.PutObjectPart(ctx, s.opt.Bucket, obj, uploadID, num, bytes.NewReader(b), int64(len(b)), minio.PutObjectPartOptions{})
			s.bufs.Put(buf) // before reporting, so the reader can reuse it: two buffers, not three
			if err != nil {
				inflight <- partResult{err: s.wrap(ctx, fmt.Sprintf("put %s: part %d", key, num), err)}
				return
			}
			inflight <- partResult{part: minio.CompletePart{PartNumber: num, ETag: p.ETag}}
		}()
	}

	// first (a full part) now belongs to this upload; every buffer goes back to the pool
	// when its part is done.
	cur, n := first, len(*first)
	for num := 1; ; num++ {
		total += int64(n)
		upload(num, (*cur)[:n], cur)
		// Read the next part while this one uploads.
		next := s.getBuf()
		k, rerr := readFull(ctx, r, *next)
		if rerr != nil && rerr != io.EOF && rerr != io.ErrUnexpectedEOF {
			s.bufs.Put(next)
			return total, s.errorf("put %s: read: %w", key, rerr)
		}
		if cerr := collect(); cerr != nil {
			s.bufs.Put(next)
			return total, cerr
		}
		if k == 0 {
			s.bufs.Put(next)
			break
		}
		if num == s.maxParts {
			s.bufs.Put(next)
			return total, s.errorf("put %s: the object is larger than %d bytes, the most %d parts of part_size %d can hold; nothing was stored: raise part_size (up to 5GiB)", key, s.MaxObjectSize(), s.maxParts, s.opt.PartSize)
		}
		cur, n = next, k
	}

	_, err = s.core.CompleteMultipartUpload(ctx, s.opt.Bucket, obj, uploadID, parts, s.putOptions())
	if err != nil && minio.ToErrorResponse(err).Code == "NoSuchUpload" && s.completedBefore(ctx, obj, parts) {
		// The server completed the upload but its answer was lost, and minio-go's retry found
		// the upload gone: the object is ours (its ETag is the one our parts make).
		uploadID, err = "", nil
	}
	if err != nil {
		return total, s.wrap(ctx, "put "+key+": complete multipart upload", err)
	}
	if err := s.checkSize(ctx, key, obj, total); err != nil {
		return total, err
	}
	return total, nil
}

// completedBefore reports whether obj is the object that completing parts makes: S3's
// multipart ETag is the MD5 of the parts' binary MD5s, a dash and the part count.
func (s *Store) completedBefore(ctx context.Context, obj string, parts []minio.CompletePart) bool {
	h := md5.New()
	for _, p := range parts {
		b, err := hex.DecodeString(strings.Trim(p.ETag, `"`))
		if err != nil {
			return false
		}
		h.Write(b)
	}
	want := fmt.Sprintf("%x-%d", h.Sum(nil), len(parts))
	st, err := s.client.StatObject(ctx, s.opt.Bucket, obj, minio.StatObjectOptions{})
	return err == nil && strings.Trim(st.ETag, `"`) == want
}

// Get streams key from offset (a range request when offset > 0). A read that breaks in the
// middle (a reset, a timeout) resumes with a range request from where it stopped, up to
// MaxRetries times in a row, and only from the same object (its ETag must still match).
func (s *Store) Get(ctx context.Context, key string, offset int64) (io.ReadCloser, error) {
	obj, err := s.object(key)
	if err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, s.errorf("get %s: negative offset %d", key, offset)
	}
	body, etag, err := s.openAt(ctx, obj, offset, "")
	if err != nil {
		return nil, s.wrap(ctx, "get "+key, err)
	}
	return &resumingReader{s: s, ctx: ctx, key: key, obj: obj, body: body, off: offset, etag: etag}, nil
}

// openAt opens obj from offset; an offset at or past the end gives an empty body.
func (s *Store) openAt(ctx context.Context, obj string, offset int64, etag string) (io.ReadCloser, string, error) {
	opts := minio.GetObjectOptions{}
	if offset > 0 {
		if err := opts.SetRange(offset, 0); err != nil {
			return nil, "", err
		}
	}
	if etag != "" {
		if err := opts.SetMatchETag(etag); err != nil {
			return nil, "", err
		}
	}
	body, info, _, err := s.core.GetObject(ctx, s.opt.Bucket, obj, opts)
	if err == nil {
		return body, info.ETag, nil
	}
	if offset > 0 && minio.ToErrorResponse(err).Code == "InvalidRange" {
		// Reading from the end (or past it) of an existing object.
		st, serr := s.client.StatObject(ctx, s.opt.Bucket, obj, minio.StatObjectOptions{})
		if serr != nil {
			return nil, "", serr
		}
		if etag != "" && st.ETag != etag {
			return nil, "", fmt.Errorf("the object changed while it was read (ETag %s, was %s)", st.ETag, etag)
		}
		if offset >= st.Size {
			return io.NopCloser(bytes.NewReader(nil)), st.ETag, nil
		}
	}
	return nil, "", err
}

// resumingReader reads an object, resuming after a broken connection.
type resumingReader struct {
	s       *Store
	ctx     context.Context
	key     string
	obj     string
	body    io.ReadCloser
	off     int64
	etag    string
	retries int // resumptions in a row without progress
}

func (r *resumingReader) Read(p []byte) (int, error) {
	for {
		n, err := r.body.Read(p)
		r.off += int64(n)
		if n > 0 {
			r.retries = 0
		}
		if err == nil || err == io.EOF {
			return n, err
		}
		if r.ctx.Err() != nil || r.retries >= r.s.opt.MaxRetries {
			return n, r.s.wrap(r.ctx, fmt.Sprintf("get %s: read at byte %d", r.key, r.off), err)
		}
		r.retries++
		r.body.Close()
		r.body = io.NopCloser(bytes.NewReader(nil))
		select {
		case <-r.ctx.Done():
			return n, r.s.wrap(r.ctx, "get "+r.key, r.ctx.Err())
		case <-time.After(min(time.Second, 200*time.Millisecond<<(r.retries-1))):
		}
		body, _, oerr := r.s.openAt(r.ctx, r.obj, r.off, r.etag)
		if oerr != nil {
			return n, r.s.wrap(r.ctx, fmt.Sprintf("get %s: resume at byte %d", r.key, r.off), oerr)
		}
		r.body = body
		if n > 0 {
			return n, nil
		}
	}
}

func (r *resumingReader) Close() error { return r.body.Close() }

// List calls fn for every complete object under prefix (multipart uploads in progress are
// not objects and are never listed).
func (s *Store) List(ctx context.Context, prefix string, fn func(key string, size int64) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the listing goroutine when fn fails
	for o := range s.client.ListObjects(ctx, s.opt.Bucket, minio.ListObjectsOptions{Prefix: s.opt.Prefix + prefix, Recursive: true}) {
		if o.Err != nil {
			return s.wrap(ctx, fmt.Sprintf("list %q", prefix), o.Err)
		}
		key := strings.TrimPrefix(o.Key, s.opt.Prefix)
		if strings.HasSuffix(key, "/") { // a folder marker made by another tool
			continue
		}
		if err := fn(key, o.Size); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// Delete removes key; S3 deletes of missing keys succeed, so it asks first to honour the
// blob.Store contract (ErrNotFound).
func (s *Store) Delete(ctx context.Context, key string) error {
	obj, err := s.object(key)
	if err != nil {
		return err
	}
	if _, err := s.client.StatObject(ctx, s.opt.Bucket, obj, minio.StatObjectOptions{}); err != nil {
		return s.wrap(ctx, "delete "+key, err)
	}
	if err := s.client.RemoveObject(ctx, s.opt.Bucket, obj, minio.RemoveObjectOptions{}); err != nil {
		return s.wrap(ctx, "delete "+key, err)
	}
	return nil
}

func (s *Store) removeQuietly(obj string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = s.client.RemoveObject(ctx, s.opt.Bucket, obj, minio.RemoveObjectOptions{})
}

// errorf makes an error that names the sink and its bucket.
func (s *Store) errorf(format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &storeError{prefix: s.where(), err: err, secret: s.opt.SecretAccessKey}
}

func (s *Store) where() string {
	return fmt.Sprintf("s3 sink %q (bucket %q at %s)", s.opt.Name, s.opt.Bucket, s.opt.Endpoint)
}

// wrap turns a minio-go error into one that says what to do, wrapping blob.ErrNotFound for
// missing objects.
func (s *Store) wrap(ctx context.Context, what string, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		err = fmt.Errorf("%w (%v)", cerr, err)
	}
	resp := minio.ToErrorResponse(err)
	switch resp.Code {
	case "NoSuchKey":
		return s.errorf("%s: %w", what, blob.ErrNotFound)
	case "NoSuchBucket":
		return s.errorf("%s: bucket %q does not exist (create it, or fix bucket in the config)", what, s.opt.Bucket)
	case "InvalidAccessKeyId":
		return s.errorf("%s: the server does not know this access key (check access_key_id): %w", what, err)
	case "SignatureDoesNotMatch":
		return s.errorf("%s: the secret key is wrong (check secret_access_key): %w", what, err)
	case "AccessDenied":
		return s.errorf("%s: access denied (check the key's permissions on bucket %q): %w", what, s.opt.Bucket, err)
	}
	if resp.StatusCode == http.StatusNotFound && resp.Code == "" && strings.HasPrefix(what, "get ") {
		return s.errorf("%s: %w", what, blob.ErrNotFound)
	}
	if resp.StatusCode >= 500 {
		return s.errorf("%s: the server kept failing (%d attempts): %w", what, s.opt.MaxRetries, err)
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return s.errorf("%s: cannot reach %s, or the connection kept breaking (%d attempts; check endpoint, secure and the network): %w", what, s.opt.Endpoint, s.opt.MaxRetries, err)
	}
	return s.errorf("%s: %w", what, err)
}

// storeError names the sink and guarantees the secret key never appears in its text, even
// if a lower layer were to echo it.
type storeError struct {
	prefix string
	err    error
	secret string
}

func (e *storeError) Error() string { return redact(e.prefix+": "+e.err.Error(), e.secret) }
func (e *storeError) Unwrap() error { return e.err }

func redact(s, secret string) string {
	if len(secret) < 4 {
		return s
	}
	return strings.ReplaceAll(s, secret, "***")
}
