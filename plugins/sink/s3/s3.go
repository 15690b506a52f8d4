// Package s3 is the S3 sink: a blob.Store in a bucket of any S3-compatible service (AWS S3,
// DigitalOcean Spaces, MinIO), used through core's snapshot layout and commit protocol.
// Objects are stored as <prefix><pipeline>/<snapshot-id>/<object>.
package s3

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/nightjar-backup/nightjar/core"
	"github.com/nightjar-backup/nightjar/core/snapstore"
)

// Register adds the s3 sink to r.
func Register(r *core.Registry) {
	r.AddSink(core.SinkPlugin{
		Type: "s3",
		Doc: "Stores snapshots in an S3 bucket (AWS S3, DigitalOcean Spaces, MinIO): " +
			"<prefix><pipeline>/<snapshot-id>/<object>. Uploads stream in parts of part_size " +
			"(at most two parts in memory); the largest object is 10,000 × part_size.",
		Fields: []core.Field{
			{Name: "endpoint", Kind: core.KindString, Required: true, Doc: "The service's host[:port], without scheme.", Example: "nyc3.digitaloceanspaces.com"},
			{Name: "secure", Kind: core.KindBool, Default: true, Doc: "Use HTTPS; false for plain HTTP (a local MinIO)."},
			{Name: "region", Kind: core.KindString, Doc: "The bucket's region; empty asks the server.", Example: "us-east-1"},
			{Name: "bucket", Kind: core.KindString, Required: true, Doc: "The bucket; it must exist.", Example: "substrate-backups"},
			{Name: "prefix", Kind: core.KindString, Default: "", Doc: "Prepended to every object key as is; end it with / to make a folder.", Example: "nightly/"},
			{Name: "access_key_id", Kind: core.KindString, Required: true, Secret: true, Doc: "The access key id.", Example: "${SPACES_KEY}"},
			{Name: "secret_access_key", Kind: core.KindString, Required: true, Secret: true, Doc: "The secret key.", Example: "/etc/nightjar/spaces-secret (as secret_access_key_file)"},
			{Name: "storage_class", Kind: core.KindString, Default: "", Doc: "Storage class for new objects; empty for the bucket's default.", Example: "STANDARD_IA"},
			{Name: "part_size", Kind: core.KindString, Default: "16MiB", Doc: "Multipart part size, 5MiB to 5GiB: memory per upload is twice this, the largest object 10,000 times this.", Example: "64MiB"},
		},
		New: func(_ context.Context, c *core.Component, env core.Env) (core.Sink, error) {
			st, err := newFromComponent(c)
			if err != nil {
				return nil, err
			}
			return snapstore.New(st, env.Pipeline), nil
		},
	})
}

func newFromComponent(c *core.Component) (*Store, error) {
	ps, err := ParseSize(c.String("part_size"))
	if err != nil {
		return nil, c.Errorf("part_size", "%v", err)
	}
	if ps < MinPartSize || ps > MaxPartSize {
		return nil, c.Errorf("part_size", "expected 5MiB to 5GiB, got %s", c.String("part_size"))
	}
	endpoint := c.String("endpoint")
	if strings.Contains(endpoint, "://") || strings.Contains(endpoint, "/") {
		return nil, c.Errorf("endpoint", "expected host[:port] without scheme or path, got %q (use secure: false for plain HTTP)", endpoint)
	}
	if c.String("bucket") == "" {
		return nil, c.Errorf("bucket", "must not be empty")
	}
	return NewStore(Options{
		Name:            c.Name,
		Endpoint:        endpoint,
		Secure:          c.Bool("secure"),
		Region:          c.String("region"),
		Bucket:          c.String("bucket"),
		Prefix:          c.String("prefix"),
		AccessKeyID:     c.String("access_key_id"),
		SecretAccessKey: c.String("secret_access_key"),
		StorageClass:    c.String("storage_class"),
		PartSize:        ps,
	})
}

// ParseSize reads a byte size: a number with an optional unit (B, KiB, MiB, GiB, KB, MB, GB).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := t, ""
	if i >= 0 {
		num, unit = strings.TrimSpace(t[:i]), strings.TrimSpace(t[i:])
	}
	mult := map[string]float64{"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30,
		"KB": 1e3, "MB": 1e6, "GB": 1e9}[unit]
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || mult == 0 || f < 0 {
		return 0, fmt.Errorf("expected a size such as 16MiB or 64MiB, got %q", s)
	}
	return int64(f * mult), nil
}
