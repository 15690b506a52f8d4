package blob

import (
	"crypto/tls"

	"github.com/nightjar-backup/nightjar/sdk/blob/blobpb"
)

// UseSHA256 makes c send sha256 trailers, as a host built with an SDK older than CRC32C
// trailers does.
func (c *Client) UseSHA256() {
	cs := blobpb.Checksum_CHECKSUM_SHA256
	c.mu.Lock()
	c.checksum = &cs
	c.mu.Unlock()
}

// Seq is the number of the last Put that used the ring (0: none did).
func (p *Ring) Seq() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seq
}

// Broken reports whether a failure has closed the ring.
func (p *Ring) Broken() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.broken
}

// NewCert makes a certificate as AttachTLS does, for tests that need a stranger's.
func NewCert() (tls.Certificate, error) { return newCert() }
