//go:build ignore

// build-policy rebuilds a Go retention policy to WebAssembly with nightjar's fixed,
// reproducible flags: go run scripts/build-policy.go DIR PKG OUT.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/nightjar-backup/nightjar/sdk/policy/policytest"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: go run scripts/build-policy.go DIR PKG OUT")
		os.Exit(2)
	}
	if err := policytest.Build(context.Background(), os.Args[1], os.Args[2], os.Args[3]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
