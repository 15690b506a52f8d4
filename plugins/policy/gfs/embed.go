//go:build !wasip1

package gfs

import _ "embed"

// Module is the built-in policy compiled to WebAssembly (`make policy` rebuilds it from
// wasm/main.go; a test checks that the committed bytes match the source).
//
//go:embed gfs.wasm
var Module []byte

// Name is the built-in policy's name in configs (`policy: gfs`).
const Name = "gfs"
