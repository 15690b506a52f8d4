//go:build !wasip1

package gfs

import (
	_ "embed"

	"github.com/nightjar-backup/nightjar/core/retention"
)

// Module is the built-in policy compiled to WebAssembly (`make policy` rebuilds it from
// wasm/main.go; a test checks that the committed bytes match the source).
//
//go:embed gfs.wasm
var Module []byte

// Name is the built-in policy's name in configs (`policy: gfs`).
const Name = "gfs"

// Builtin is gfs as the host registers it: Bounded, so it runs without wazero's
// interruption checks. It may vouch for that because its work is bounded by its input:
// it decodes the snapshots once, sorts them when they are not newest first, and decides
// in one pass over them with a fixed number of rules (plus the keep_tag lists) per
// snapshot; no loop runs longer than its input makes it.
func Builtin() retention.Builtin { return retention.Builtin{Module: Module, Bounded: true} }
