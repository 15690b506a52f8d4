// Command s3put uploads the same generated stream to an S3 endpoint either through
// nightjar's S3 store or through a bare minio-go PutObject, and prints one JSON line with the
// time and the process's peak RSS. bench/30-s3.sh runs it against a local MinIO.
//
//	s3put -endpoint 127.0.0.1:9000 -bucket bench -mode nightjar|minio-go|minio-go-default -mb 1024
//
// Credentials come from S3PUT_ACCESS_KEY and S3PUT_SECRET_KEY.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/nightjar-backup/nightjar/plugins/sink/s3"
)

// stream yields n bytes of a repeating pseudo-random 1 MiB block; it is not seekable and has
// no known size, like a pipe from the engine.
type stream struct {
	block []byte
	left  int64
	off   int
}

func newStream(n int64) *stream {
	b := make([]byte, 1<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return &stream{block: b, left: n}
}

func (s *stream) Read(p []byte) (int, error) {
	if s.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	n := copy(p, s.block[s.off:])
	s.off = (s.off + n) % len(s.block)
	s.left -= int64(n)
	return n, nil
}

type result struct {
	Mode      string  `json:"mode"`
	Bytes     int64   `json:"bytes"`
	Seconds   float64 `json:"seconds"`
	MBps      float64 `json:"mb_per_s"`
	MaxRSSKiB int64   `json:"max_rss_kib"`
}

func main() {
	endpoint := flag.String("endpoint", "", "host:port of the S3 endpoint (plain HTTP)")
	bucket := flag.String("bucket", "bench", "bucket (must exist unless -make-bucket)")
	mode := flag.String("mode", "nightjar", "nightjar, minio-go (PartSize 16 MiB) or minio-go-default (no PartSize)")
	mb := flag.Int64("mb", 64, "MiB to upload")
	makeBucket := flag.Bool("make-bucket", false, "create the bucket and exit")
	flag.Parse()
	if err := run(*endpoint, *bucket, *mode, *mb, *makeBucket); err != nil {
		fmt.Fprintln(os.Stderr, "s3put:", err)
		os.Exit(1)
	}
}

func run(endpoint, bucket, mode string, mb int64, makeBucket bool) error {
	ctx := context.Background()
	ak, sk := os.Getenv("S3PUT_ACCESS_KEY"), os.Getenv("S3PUT_SECRET_KEY")
	client, err := minio.New(endpoint, &minio.Options{Creds: credentials.NewStaticV4(ak, sk, ""),
		Transport: &http.Transport{Proxy: nil}, Region: "us-east-1"})
	if err != nil {
		return err
	}
	if makeBucket {
		return client.MakeBucket(ctx, bucket, minio.MakeBucketOptions{})
	}
	n := mb << 20
	key := fmt.Sprintf("bench/%s-%d", mode, time.Now().UnixNano())
	src := newStream(n)
	start := time.Now()
	var stored int64
	switch mode {
	case "nightjar":
		st, err := s3.NewStore(s3.Options{Name: "bench", Endpoint: endpoint, Region: "us-east-1", Bucket: bucket,
			AccessKeyID: ak, SecretAccessKey: sk, Transport: &http.Transport{Proxy: nil}})
		if err != nil {
			return err
		}
		stored, err = st.Put(ctx, key, src)
		if err != nil {
			return err
		}
	case "minio-go", "minio-go-default":
		opts := minio.PutObjectOptions{}
		if mode == "minio-go" {
			opts.PartSize = s3.DefaultPartSize
		}
		info, err := client.PutObject(ctx, bucket, key, src, -1, opts)
		if err != nil {
			return err
		}
		stored = info.Size
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	secs := time.Since(start).Seconds()
	if stored != n {
		return fmt.Errorf("%s stored %d bytes, want %d", mode, stored, n)
	}
	_ = client.RemoveObject(ctx, bucket, key, minio.RemoveObjectOptions{})
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return json.NewEncoder(os.Stdout).Encode(result{Mode: mode, Bytes: n, Seconds: secs,
		MBps: float64(n) / (1 << 20) / secs, MaxRSSKiB: ru.Maxrss})
}
