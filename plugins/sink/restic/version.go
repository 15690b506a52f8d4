package restic

import (
	"fmt"
	"regexp"
	"strconv"
)

// version is a restic release, as `restic version` prints it.
type version struct{ major, minor, patch int }

func (v version) String() string { return fmt.Sprintf("%d.%d.%d", v.major, v.minor, v.patch) }

func (v version) atLeast(major, minor int) bool {
	return v.major > major || v.major == major && v.minor >= minor
}

// minVersion is the oldest restic this sink works with: repository format 2 (compression)
// and `backup --stdin --json` with a snapshot id in the summary.
var minVersion = version{0, 14, 0}

var versionPattern = regexp.MustCompile(`^restic (\d+)\.(\d+)\.(\d+)`)

// parseVersion reads the first line of `restic version`, e.g.
// "restic 0.14.0 compiled with go1.19.8 on linux/amd64". Development builds print
// "restic 0.16.4-dev (compiled manually) ..." and parse as their release.
func parseVersion(out string) (version, error) {
	m := versionPattern.FindStringSubmatch(out)
	if m == nil {
		return version{}, fmt.Errorf("cannot read the restic version from %q", firstLine(out))
	}
	var v version
	v.major, _ = strconv.Atoi(m[1])
	v.minor, _ = strconv.Atoi(m[2])
	v.patch, _ = strconv.Atoi(m[3])
	return v, nil
}

// features are what a restic release can do beyond 0.14.
type features struct {
	// retryLock: the global --retry-lock flag (0.16): restic waits for a lock itself.
	retryLock bool
}

func featuresOf(v version) features {
	return features{retryLock: v.atLeast(0, 16)}
}

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}
