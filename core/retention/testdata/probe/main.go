// Command probe is a policy that reports what it can see of its sandbox (core/retention's
// TestSandbox): the filesystem, the environment and the clock.
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/nightjar-backup/nightjar/sdk/policy"
)

func main() {
	policy.Run(func(in *policy.Input) ([]policy.Decision, error) {
		_, errFS := os.ReadDir("/")
		_, errFile := os.Open("/etc/passwd")
		reason := fmt.Sprintf("fs=%v file=%v env=%d clock=%s", errFS == nil, errFile == nil, len(os.Environ()), time.Now().UTC().Format(time.RFC3339))
		var ds []policy.Decision
		for _, s := range in.Snapshots {
			ds = append(ds, policy.Decision{ID: s.ID, Keep: true, Reason: reason})
		}
		return ds, nil
	})
}
