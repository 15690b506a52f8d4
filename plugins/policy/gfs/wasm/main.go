// Command gfs is the built-in retention policy as a WASI command module. Built with
// `make policy` (GOOS=wasip1 GOARCH=wasm, see plugins/policy/gfs/build.go) into
// plugins/policy/gfs/gfs.wasm, which the nightjar binary embeds.
package main

import (
	"github.com/nightjar-backup/nightjar/plugins/policy/gfs"
	"github.com/nightjar-backup/nightjar/sdk/policy"
)

func main() { policy.Run(gfs.Decide) }
