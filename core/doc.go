// Package core holds nightjar's nouns and the small interfaces between them: snapshots,
// manifests, sources, transforms and sinks, the registry that plugins add themselves to, and
// the config schema each plugin declares. It knows no concrete plugin.
package core
