package config

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/nightjar-backup/nightjar/core"
)

// Config is one validated pipeline.
type Config struct {
	File       string
	Version    int
	Pipeline   string
	StateDir   string
	ScratchDir string
	Sources    []*core.Component
	Transforms []*core.Component
	Sinks      []*Sink
	Plugins    *core.Component // dir, pins
	Notify     *core.Component // healthchecks_url, timeout
	Metrics    *core.Component // textfile
	Hooks      *core.Component // before, after, on_error, timeout

	root *core.Component
}

// Sink is a sink entry: the plugin's component plus core's retention settings.
type Sink struct {
	*core.Component
	Plugin    core.SinkPlugin
	Retention *Retention // nil when the sink has no retention
}

// Retention is a sink's retention block.
type Retention struct {
	*core.Component
}

func (r *Retention) Policy() string             { return r.String("policy") }
func (r *Retention) Params() map[string]any     { return r.Map("params") }
func (r *Retention) MaxDeleteFraction() float64 { return r.Float("max_delete_fraction") }
func (r *Retention) Grace() time.Duration       { return r.Duration("grace") }
func (r *Retention) MemoryLimitMiB() int        { return int(r.Int("memory_limit_mib")) }
func (r *Retention) Timeout() time.Duration     { return r.Duration("timeout") }

var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// Section schemas. Plugins declare their own fields; these are core's.
var (
	rootFields = []core.Field{
		{Name: "version", Kind: core.KindInt, Required: true, Min: ptr(1), Max: ptr(1), Doc: "Config format version; must be 1.", Example: "1"},
		{Name: "pipeline", Kind: core.KindString, Required: true, Doc: "The pipeline's name; also the folder (prefix) of its snapshots in every sink. Letters, digits, '.', '_' and '-'.", Example: "substrate"},
		{Name: "state_dir", Kind: core.KindPath, Doc: "Where nightjar keeps locks, the policy compilation cache and run state. Default: /var/lib/nightjar as root, else ~/.local/state/nightjar."},
		{Name: "scratch_dir", Kind: core.KindPath, Doc: "Local scratch space (the SQLite source's consistent copy). Default: <state_dir>/scratch."},
	}
	pluginsFields = []core.Field{
		{Name: "dir", Kind: core.KindPath, Doc: "Folder searched first for external sink plugins (executables named nightjar-sink-<type>); then $NIGHTJAR_PLUGIN_PATH, then $XDG_DATA_HOME/nightjar/plugins."},
		{Name: "pins", Kind: core.KindStringMap, Doc: "Optional sha256 pins: sink type → sha256 (hex) of its plugin executable. A pinned plugin whose file does not match is never run.", Example: "{folder: 3a7bd3e2...}"},
	}
	notifyFields = []core.Field{
		{Name: "healthchecks_url", Kind: core.KindString, Secret: true, Doc: "Healthchecks-style ping URL: <url>/start at the start, <url> on success, <url>/fail on failure."},
		{Name: "timeout", Kind: core.KindDuration, Default: 10 * time.Second, Doc: "Time limit of each ping."},
	}
	metricsFields = []core.Field{
		{Name: "textfile", Kind: core.KindPath, Doc: "Prometheus textfile written atomically after each run (node_exporter textfile collector)."},
	}
	hooksFields = []core.Field{
		{Name: "before", Kind: core.KindString, Doc: "Shell command run before the run; a failure aborts the run."},
		{Name: "after", Kind: core.KindString, Doc: "Shell command run after a successful run."},
		{Name: "on_error", Kind: core.KindString, Doc: "Shell command run after a failed or partial run."},
		{Name: "timeout", Kind: core.KindDuration, Default: 5 * time.Minute, Doc: "Time limit of each hook."},
	}
	retentionFields = []core.Field{
		{Name: "policy", Kind: core.KindString, Required: true, Doc: "A built-in policy name (gfs) or the path of a WASM policy module.", Example: "gfs"},
		{Name: "params", Kind: core.KindMap, Default: map[string]any{}, Doc: "Parameters passed to the policy, e.g. {keep_daily: 7}."},
		{Name: "max_delete_fraction", Kind: core.KindFloat, Default: 0.5, Min: ptr(0), Max: ptr(1), Doc: "Deleting more than this fraction of a sink's snapshots in one prune needs --force."},
		{Name: "grace", Kind: core.KindDuration, Default: 24 * time.Hour, Doc: "Leftovers of incomplete snapshots are removed once older than this."},
		{Name: "memory_limit_mib", Kind: core.KindInt, Default: int64(64), Min: ptr(1), Max: ptr(4096), Doc: "Memory limit of the policy module."},
		{Name: "timeout", Kind: core.KindDuration, Default: 5 * time.Second, Doc: "Time limit of one policy evaluation."},
	}
)

// RootFields, RetentionFields etc. are core's schemas, for docs.
func RootFields() []core.Field      { return rootFields }
func RetentionFields() []core.Field { return retentionFields }
func SectionFields() map[string][]core.Field {
	return map[string][]core.Field{"plugins": pluginsFields, "notify": notifyFields, "metrics": metricsFields, "hooks": hooksFields}
}

func ptr(f float64) *float64 { return &f }

// Load reads, expands and validates the config file against reg.
func Load(ctx context.Context, file string, reg *core.Registry) (*Config, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, core.ConfigErrors{{File: file, Msg: fmt.Sprintf("cannot read config: %v", err)}}
	}
	return Parse(ctx, file, b, reg, os.LookupEnv)
}

// Parse validates config bytes; lookup resolves ${VAR}.
func Parse(ctx context.Context, file string, b []byte, reg *core.Registry, lookup func(string) (string, bool)) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, core.ConfigErrors{yamlError(file, err)}
	}
	p := &parser{file: file, lines: map[string]int{}, lookup: lookup}
	if len(doc.Content) == 0 {
		return nil, core.ConfigErrors{{File: file, Msg: "the file is empty; expected a mapping with version, pipeline, sources and sinks"}}
	}
	rawAny := p.value(doc.Content[0], "")
	raw, ok := rawAny.(map[string]any)
	if !ok {
		return nil, core.ConfigErrors{{File: file, Msg: "expected a mapping at the top level"}}
	}
	if len(p.errs) > 0 {
		return nil, p.errs
	}
	baseDir := ""
	if abs, err := filepath.Abs(file); err == nil {
		baseDir = filepath.Dir(abs)
	}
	c := &Config{File: file}
	errs := p.build(ctx, c, raw, baseDir, reg)
	if len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

type parser struct {
	file   string
	lines  map[string]int
	lookup func(string) (string, bool)
	errs   core.ConfigErrors
}

// value converts a YAML node to plain Go values, recording each key path's line and
// expanding ${VAR} in strings.
func (p *parser) value(n *yaml.Node, path string) any {
	if path != "" {
		p.lines[path] = n.Line
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil
		}
		return p.value(n.Content[0], path)
	case yaml.AliasNode:
		return p.value(n.Alias, path)
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			sub := k
			if path != "" {
				sub = path + "." + k
			}
			if _, dup := m[k]; dup {
				p.errs = append(p.errs, &core.ConfigError{File: p.file, Line: n.Content[i].Line, Key: sub, Msg: "key given twice"})
			}
			p.lines[sub] = n.Content[i].Line
			m[k] = p.value(n.Content[i+1], sub)
			p.lines[sub] = n.Content[i].Line
		}
		return m
	case yaml.SequenceNode:
		list := make([]any, len(n.Content))
		for i, e := range n.Content {
			list[i] = p.value(e, fmt.Sprintf("%s[%d]", path, i))
		}
		return list
	case yaml.ScalarNode:
		var v any
		if err := n.Decode(&v); err != nil {
			p.errs = append(p.errs, &core.ConfigError{File: p.file, Line: n.Line, Key: path, Msg: err.Error()})
			return nil
		}
		if s, ok := v.(string); ok {
			exp, err := expand(s, p.lookup)
			if err != nil {
				p.errs = append(p.errs, &core.ConfigError{File: p.file, Line: n.Line, Key: path, Msg: err.Error()})
			}
			return exp
		}
		return v
	}
	return nil
}

var (
	varPattern = regexp.MustCompile(`\$\$|\$\{([^}]*)\}`)
	envName    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// expand replaces ${VAR} with the variable's value; $$ is a literal $. An unset variable
// is an error (a silently empty password or bucket is worse than no backup).
func expand(s string, lookup func(string) (string, bool)) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var firstErr error
	out := varPattern.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		name := m[2 : len(m)-1]
		if !envName.MatchString(name) {
			if firstErr == nil {
				firstErr = fmt.Errorf("invalid variable reference %q: expected ${NAME}", m)
			}
			return m
		}
		v, ok := lookup(name)
		if !ok {
			if firstErr == nil {
				firstErr = fmt.Errorf("environment variable %s is not set", name)
			}
			return ""
		}
		return v
	})
	return out, firstErr
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// yamlError turns "yaml: line 3: did not find ..." into file:3: invalid YAML: did not find ...
func yamlError(file string, err error) *core.ConfigError {
	msg := err.Error()
	ce := &core.ConfigError{File: file}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		ce.Line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	}
	ce.Msg = "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")
	return ce
}
