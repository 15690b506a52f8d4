package s3

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/nightjar-backup/nightjar/sdk/blob"
	"github.com/nightjar-backup/nightjar/sdk/blob/blobtest"
)

// TestConformance runs the blob.Store conformance suite that every store and external sink
// plugin must pass, against a real MinIO. Each subtest gets its own prefix, so the stores
// are independent and empty.
func TestConformance(t *testing.T) {
	srv := startServer(t)
	var n atomic.Int64
	blobtest.Run(t, func(t *testing.T) blob.Store {
		opt := srv.options("")
		opt.Prefix = fmt.Sprintf("conformance-%d/", n.Add(1))
		return srv.store(t, opt)
	})
}
