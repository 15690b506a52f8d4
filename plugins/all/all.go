// Package all builds the registry of every plugin compiled into the nightjar binary. A new
// plugin is one folder and one line here.
package all

import (
	"github.com/nightjar-backup/nightjar/core"
	"github.com/nightjar-backup/nightjar/plugins/sink/local"
	"github.com/nightjar-backup/nightjar/plugins/sink/restic"
	"github.com/nightjar-backup/nightjar/plugins/sink/s3"
	"github.com/nightjar-backup/nightjar/plugins/source/sqlite"
	"github.com/nightjar-backup/nightjar/plugins/source/tree"
	"github.com/nightjar-backup/nightjar/plugins/transform/age"
	"github.com/nightjar-backup/nightjar/plugins/transform/zstd"
)

// Registry returns a registry with every built-in plugin.
func Registry() *core.Registry {
	r := core.NewRegistry()
	tree.Register(r)
	sqlite.Register(r)
	zstd.Register(r)
	age.Register(r)
	local.Register(r)
	restic.Register(r)
	s3.Register(r)
	return r
}
