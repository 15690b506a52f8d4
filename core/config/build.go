package config

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/nightjar-backup/nightjar/core"
)

var sectionKeys = map[string]bool{"sources": true, "transforms": true, "sinks": true,
	"plugins": true, "notify": true, "metrics": true, "hooks": true}

func (p *parser) build(ctx context.Context, c *Config, raw map[string]any, baseDir string, reg *core.Registry) core.ConfigErrors {
	root := &core.Component{Key: "", File: p.file}
	errs := p.decodeRoot(root, raw, baseDir)
	c.root = root
	c.Version = int(root.Int("version"))
	c.Pipeline = root.String("pipeline")
	if c.Pipeline != "" && !namePattern.MatchString(c.Pipeline) {
		errs = append(errs, p.errAt("pipeline", "invalid name %q: use letters, digits, '.', '_' and '-' (it becomes a folder name)", c.Pipeline))
	}
	c.StateDir = root.String("state_dir")
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir()
	}
	c.ScratchDir = root.String("scratch_dir")
	if c.ScratchDir == "" {
		c.ScratchDir = filepath.Join(c.StateDir, "scratch")
	}

	var e core.ConfigErrors
	c.Plugins, e = p.section(raw, "plugins", pluginsFields, baseDir)
	errs = append(errs, e...)
	c.Notify, e = p.section(raw, "notify", notifyFields, baseDir)
	errs = append(errs, e...)
	c.Metrics, e = p.section(raw, "metrics", metricsFields, baseDir)
	errs = append(errs, e...)
	c.Hooks, e = p.section(raw, "hooks", hooksFields, baseDir)
	errs = append(errs, e...)

	settings := core.PluginSettings{Dir: c.Plugins.String("dir"), Pins: c.Plugins.StringMap("pins")}

	sources, e := p.list(raw, "sources", true)
	errs = append(errs, e...)
	names := map[string]string{}
	for i, s := range sources {
		key := fmt.Sprintf("sources[%d]", i)
		comp, e := p.named(s, key, names)
		errs = append(errs, e...)
		if comp == nil {
			continue
		}
		plug, ok := reg.Source(comp.Type)
		if !ok {
			errs = append(errs, p.errAt(key+".type", "unknown source type %q (known: %s)", comp.Type, strings.Join(reg.SourceTypes(), ", ")))
			continue
		}
		errs = append(errs, comp.DecodeFields(plug.Fields, s, map[string]bool{"name": true, "type": true}, baseDir, p.lines)...)
		c.Sources = append(c.Sources, comp)
	}

	transforms, e := p.list(raw, "transforms", false)
	errs = append(errs, e...)
	for i, t := range transforms {
		key := fmt.Sprintf("transforms[%d]", i)
		typ, ok := t["type"].(string)
		if !ok || typ == "" {
			errs = append(errs, p.errAt(key+".type", "required key \"type\" is missing (known: %s)", strings.Join(reg.TransformTypes(), ", ")))
			continue
		}
		plug, ok := reg.Transform(typ)
		if !ok {
			errs = append(errs, p.errAt(key+".type", "unknown transform type %q (known: %s)", typ, strings.Join(reg.TransformTypes(), ", ")))
			continue
		}
		comp := &core.Component{Type: typ, Key: key, File: p.file}
		errs = append(errs, comp.DecodeFields(plug.Fields, t, map[string]bool{"type": true}, baseDir, p.lines)...)
		c.Transforms = append(c.Transforms, comp)
	}

	sinks, e := p.list(raw, "sinks", true)
	errs = append(errs, e...)
	sinkNames := map[string]string{}
	for i, s := range sinks {
		key := fmt.Sprintf("sinks[%d]", i)
		comp, e := p.named(s, key, sinkNames)
		errs = append(errs, e...)
		if comp == nil {
			continue
		}
		plug, ok, err := reg.Sink(ctx, comp.Type, settings)
		switch {
		case err != nil:
			errs = append(errs, p.errAt(key+".type", "sink type %q: %v", comp.Type, err))
			continue
		case !ok:
			errs = append(errs, p.errAt(key+".type", "unknown sink type %q: not built in (%s) and no plugin executable nightjar-sink-%s was found (plugins.dir, $NIGHTJAR_PLUGIN_PATH, $XDG_DATA_HOME/nightjar/plugins)",
				comp.Type, strings.Join(reg.SinkTypes(), ", "), comp.Type))
			continue
		}
		errs = append(errs, comp.DecodeFields(plug.Fields, s, map[string]bool{"name": true, "type": true, "retention": true}, baseDir, p.lines)...)
		sink := &Sink{Component: comp, Plugin: plug}
		if r, present := s["retention"]; present {
			rm, ok := r.(map[string]any)
			if !ok {
				errs = append(errs, p.errAt(key+".retention", "expected a mapping such as {policy: gfs, params: {keep_daily: 7}}"))
			} else {
				rc := &core.Component{Type: "retention", Key: key + ".retention", File: p.file}
				errs = append(errs, rc.DecodeFields(retentionFields, rm, nil, baseDir, p.lines)...)
				sink.Retention = &Retention{Component: rc}
			}
		}
		c.Sinks = append(c.Sinks, sink)
	}
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
	return errs
}

func (p *parser) decodeRoot(root *core.Component, raw map[string]any, baseDir string) core.ConfigErrors {
	skip := map[string]bool{}
	for k := range sectionKeys {
		skip[k] = true
	}
	// Root keys have no prefix; DecodeFields writes "<Key>.<name>", so strip the dot.
	errs := root.DecodeFields(rootFields, raw, skip, baseDir, p.lines)
	for _, e := range errs {
		e.Key = strings.TrimPrefix(e.Key, ".")
		if e.Line == 0 {
			e.Line = p.lines[e.Key]
		}
	}
	return errs
}

func (p *parser) section(raw map[string]any, name string, fields []core.Field, baseDir string) (*core.Component, core.ConfigErrors) {
	comp := &core.Component{Type: name, Key: name, File: p.file}
	v, ok := raw[name]
	if !ok || v == nil {
		return comp, comp.DecodeFields(fields, map[string]any{}, nil, baseDir, p.lines)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return comp, core.ConfigErrors{p.errAt(name, "expected a mapping")}
	}
	return comp, comp.DecodeFields(fields, m, nil, baseDir, p.lines)
}

func (p *parser) list(raw map[string]any, name string, required bool) ([]map[string]any, core.ConfigErrors) {
	v, ok := raw[name]
	if !ok || v == nil {
		if required {
			return nil, core.ConfigErrors{p.errAt(name, "required key %q is missing: at least one entry is needed", name)}
		}
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, core.ConfigErrors{p.errAt(name, "expected a list of mappings")}
	}
	if required && len(list) == 0 {
		return nil, core.ConfigErrors{p.errAt(name, "at least one entry is needed")}
	}
	var out []map[string]any
	var errs core.ConfigErrors
	for i, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			errs = append(errs, p.errAt(fmt.Sprintf("%s[%d]", name, i), "expected a mapping with name and type"))
			continue
		}
		out = append(out, m)
	}
	return out, errs
}

// named reads the name and type of a source or sink entry and checks the name is unique.
func (p *parser) named(m map[string]any, key string, seen map[string]string) (*core.Component, core.ConfigErrors) {
	var errs core.ConfigErrors
	name, _ := m["name"].(string)
	typ, _ := m["type"].(string)
	if name == "" {
		errs = append(errs, p.errAt(key+".name", "required key \"name\" is missing"))
	} else if !namePattern.MatchString(name) {
		errs = append(errs, p.errAt(key+".name", "invalid name %q: use letters, digits, '.', '_' and '-'", name))
	} else if prev, dup := seen[name]; dup {
		errs = append(errs, p.errAt(key+".name", "name %q is already used by %s", name, prev))
	} else {
		seen[name] = key
	}
	if typ == "" {
		errs = append(errs, p.errAt(key+".type", "required key \"type\" is missing"))
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return &core.Component{Name: name, Type: typ, Key: key, File: p.file}, nil
}

func (p *parser) errAt(key, format string, args ...any) *core.ConfigError {
	return &core.ConfigError{File: p.file, Line: p.lines[key], Key: key, Msg: fmt.Sprintf(format, args...)}
}

// DefaultStateDir is /var/lib/nightjar for root, else ~/.local/state/nightjar.
func DefaultStateDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/nightjar"
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "nightjar")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "nightjar")
	}
	return filepath.Join(os.TempDir(), "nightjar-state")
}

// Sink returns the sink called name, or the first sink when name is empty.
func (c *Config) Sink(name string) (*Sink, error) {
	if name == "" {
		return c.Sinks[0], nil
	}
	var names []string
	for _, s := range c.Sinks {
		if s.Name == name {
			return s, nil
		}
		names = append(names, s.Name)
	}
	return nil, fmt.Errorf("%w: no sink named %q in %s (sinks: %s)", core.ErrUsage, name, c.File, strings.Join(names, ", "))
}

// Redacted renders the effective config with every secret replaced by "***".
func (c *Config) Redacted() map[string]any {
	out := c.root.Redacted()
	out["state_dir"] = c.StateDir
	out["scratch_dir"] = c.ScratchDir
	comps := func(list []*core.Component, withName bool) []any {
		var l []any
		for _, comp := range list {
			m := comp.Redacted()
			if withName {
				m["name"] = comp.Name
			}
			m["type"] = comp.Type
			l = append(l, m)
		}
		return l
	}
	out["sources"] = comps(c.Sources, true)
	if len(c.Transforms) > 0 {
		out["transforms"] = comps(c.Transforms, false)
	}
	var sinks []any
	for _, s := range c.Sinks {
		m := s.Redacted()
		m["name"], m["type"] = s.Name, s.Type
		if s.Retention != nil {
			m["retention"] = s.Retention.Redacted()
		}
		sinks = append(sinks, m)
	}
	out["sinks"] = sinks
	for name, sec := range map[string]*core.Component{"plugins": c.Plugins, "notify": c.Notify, "metrics": c.Metrics, "hooks": c.Hooks} {
		if m := sec.Redacted(); len(m) > 0 && hasGiven(sec) {
			out[name] = m
		}
	}
	return out
}

func hasGiven(c *core.Component) bool {
	for k := range c.Values() {
		if c.Has(k) {
			return true
		}
	}
	return false
}
