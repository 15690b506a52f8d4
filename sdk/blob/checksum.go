package blob

import (
	"bytes"
	"crypto/sha256"
	"hash"
	"hash/crc32"

	"github.com/nightjar-backup/nightjar/sdk/blob/blobpb"
)

// putSum is the running checksum of a Put's data, of the kind its header names: the one
// place that knows how each kind is computed, written into a trailer and checked.
type putSum struct {
	kind blobpb.Checksum
	h    hash.Hash
}

// newPutSum starts a checksum of kind; any kind but CRC32C is sha256, the protocol's
// default.
func newPutSum(kind blobpb.Checksum) *putSum {
	if kind == blobpb.Checksum_CHECKSUM_CRC32C {
		return &putSum{kind: kind, h: crc32.New(crc32.MakeTable(crc32.Castagnoli))}
	}
	return &putSum{kind: blobpb.Checksum_CHECKSUM_SHA256, h: sha256.New()}
}

func (s *putSum) Write(p []byte) { s.h.Write(p) }

// seal writes the checksum of the data so far into t.
func (s *putSum) seal(t *blobpb.PutTrailer) {
	if s.kind == blobpb.Checksum_CHECKSUM_CRC32C {
		t.Crc32C = s.h.(hash.Hash32).Sum32()
	} else {
		t.Sha256 = s.h.Sum(nil)
	}
}

// matches reports whether t carries the checksum of the data so far.
func (s *putSum) matches(t *blobpb.PutTrailer) bool {
	if s.kind == blobpb.Checksum_CHECKSUM_CRC32C {
		return t.GetCrc32C() == s.h.(hash.Hash32).Sum32()
	}
	return bytes.Equal(t.GetSha256(), s.h.Sum(nil))
}

func (s *putSum) String() string {
	if s.kind == blobpb.Checksum_CHECKSUM_CRC32C {
		return "crc32c"
	}
	return "sha256"
}
