package core

import (
	"errors"
	"fmt"
	"strings"
)

// ConfigError is one problem in a config file: which file, which key, what was expected.
type ConfigError struct {
	File string // config file path
	Line int    // 0 when unknown
	Key  string // key path, e.g. "sinks[1].path"
	Msg  string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ConfigErrors is every problem found in one config, reported together.
type ConfigErrors []*ConfigError

func (es ConfigErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	if len(es) == 1 {
		return "invalid config: " + lines[0]
	}
	return fmt.Sprintf("invalid config (%d problems):\n  %s", len(es), strings.Join(lines, "\n  "))
}

// IsConfigError reports whether err is (or wraps) a config error; such errors exit 2.
func IsConfigError(err error) bool {
	var one *ConfigError
	var many ConfigErrors
	return errors.As(err, &one) || errors.As(err, &many)
}

// ErrPartial is wrapped by run errors when some sinks committed and others failed (exit 3).
var ErrPartial = errors.New("partial: some sinks failed")

// ErrUsage is wrapped by errors in how a command was called (exit 2).
var ErrUsage = errors.New("usage")
