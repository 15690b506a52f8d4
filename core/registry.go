package core

import (
	"context"
	"fmt"
	"sort"
)

// SourcePlugin declares a source type.
type SourcePlugin struct {
	Type   string
	Doc    string
	Fields []Field
	New    func(c *Component, env Env) (Source, error)
}

// TransformPlugin declares a transform type.
type TransformPlugin struct {
	Type   string
	Doc    string
	Fields []Field
	New    func(c *Component, env Env) (Transform, error)
	// FromDescriptor rebuilds the transform from a manifest's descriptor, for decoding.
	FromDescriptor func(desc map[string]string, env Env) (Transform, error)
}

// SinkPlugin declares a sink type.
type SinkPlugin struct {
	Type   string
	Doc    string
	Fields []Field
	New    func(ctx context.Context, c *Component, env Env) (Sink, error)
}

// PluginSettings is the config's plugins section as a SinkResolver needs it.
type PluginSettings struct {
	Dir  string            // plugins.dir: searched first; "" for none
	Pins map[string]string // plugins.pins: sink type → sha256 (hex) of its executable
}

// SinkResolver finds sink types that are not built in (external plugins). ok is false when
// it knows no such type. settings come from the config being loaded.
type SinkResolver func(ctx context.Context, typ string, settings PluginSettings) (p SinkPlugin, ok bool, err error)

// Registry holds the plugins one binary knows. It is built explicitly (see plugins/all), so
// tests can use an isolated one.
type Registry struct {
	sources    map[string]SourcePlugin
	transforms map[string]TransformPlugin
	sinks      map[string]SinkPlugin
	resolver   SinkResolver
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{
		sources:    map[string]SourcePlugin{},
		transforms: map[string]TransformPlugin{},
		sinks:      map[string]SinkPlugin{},
	}
}

func (r *Registry) AddSource(p SourcePlugin) { mustNew(r.sources, p.Type); r.sources[p.Type] = p }
func (r *Registry) AddTransform(p TransformPlugin) {
	mustNew(r.transforms, p.Type)
	r.transforms[p.Type] = p
}
func (r *Registry) AddSink(p SinkPlugin) { mustNew(r.sinks, p.Type); r.sinks[p.Type] = p }

// SetSinkResolver sets the lookup for sink types that are not built in.
func (r *Registry) SetSinkResolver(f SinkResolver) { r.resolver = f }

func mustNew[T any](m map[string]T, typ string) {
	if _, dup := m[typ]; dup {
		panic(fmt.Sprintf("nightjar: plugin type %q registered twice", typ))
	}
}

func (r *Registry) Source(typ string) (SourcePlugin, bool) { p, ok := r.sources[typ]; return p, ok }
func (r *Registry) Transform(typ string) (TransformPlugin, bool) {
	p, ok := r.transforms[typ]
	return p, ok
}

// Sink finds a built-in sink type, then asks the resolver.
func (r *Registry) Sink(ctx context.Context, typ string, settings PluginSettings) (SinkPlugin, bool, error) {
	if p, ok := r.sinks[typ]; ok {
		return p, true, nil
	}
	if r.resolver == nil {
		return SinkPlugin{}, false, nil
	}
	return r.resolver(ctx, typ, settings)
}

// SourceTypes, TransformTypes and SinkTypes list the built-in types, sorted.
func (r *Registry) SourceTypes() []string    { return keys(r.sources) }
func (r *Registry) TransformTypes() []string { return keys(r.transforms) }
func (r *Registry) SinkTypes() []string      { return keys(r.sinks) }

func keys[T any](m map[string]T) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// BuiltinSink returns a built-in sink type without consulting the resolver (for docs).
func (r *Registry) BuiltinSink(typ string) (SinkPlugin, bool) { p, ok := r.sinks[typ]; return p, ok }
