package blob

import (
	"context"
	"fmt"
	"time"
)

// Kind is the type of a plugin's config field. nightjar checks every value against it
// before the plugin sees the config.
type Kind int

const (
	KindString    Kind = iota + 1
	KindPath           // a string; nightjar resolves relative paths against the config file's folder
	KindInt            // int64
	KindFloat          // float64
	KindBool           // bool
	KindDuration       // time.Duration; "90s", "36h", "7d" in config files
	KindStrings        // []string
	KindStringMap      // map[string]string
)

// Field declares one config key of a plugin sink. nightjar validates the sink's keys
// against these declarations exactly as it does for built-in sinks: unknown keys, missing
// required keys and wrong types are config errors that name the file, line and key.
type Field struct {
	Name     string
	Kind     Kind
	Required bool
	Secret   bool // never logged or shown; users may give <name>_file instead
	Default  any  // of the Kind's Go type (int64 for KindInt); nil for none
	Enum     []string
	Doc      string
	Example  string
}

// Description is what a plugin tells nightjar about itself.
type Description struct {
	Name             string // the sink type; the executable is nightjar-sink-<Name>
	Version          string // the plugin's own version
	Doc              string
	Fields           []Field
	ProtocolVersions []int // filled in by Serve
}

// Describer is implemented by a Store that declares its name, version and config keys.
// Without it, a plugin takes no config keys.
type Describer interface {
	Describe() Description
}

// Configurable is implemented by a Store that takes config. Configure is called once,
// before any other method, with the sink's validated keys (defaults filled in, secrets
// included). It is never given through the environment: plugins do not inherit nightjar's.
type Configurable interface {
	Configure(ctx context.Context, cfg Config) error
}

// Config is a sink's validated config as a plugin receives it.
type Config struct {
	Sink    string // the sink's name in nightjar's config, for messages
	values  map[string]any
	secrets map[string]bool
}

// NewConfig builds a Config, for tests of a Configurable store.
func NewConfig(sink string, values map[string]any) Config {
	return Config{Sink: sink, values: values, secrets: map[string]bool{}}
}

// Has reports whether key has a value (given or defaulted).
func (c Config) Has(key string) bool { _, ok := c.values[key]; return ok }

// IsSecret reports whether key was sent as a secret.
func (c Config) IsSecret(key string) bool { return c.secrets[key] }

func (c Config) String(key string) string { s, _ := c.values[key].(string); return s }
func (c Config) Int(key string) int64     { n, _ := c.values[key].(int64); return n }
func (c Config) Float(key string) float64 { f, _ := c.values[key].(float64); return f }
func (c Config) Bool(key string) bool     { b, _ := c.values[key].(bool); return b }
func (c Config) Duration(key string) time.Duration {
	d, _ := c.values[key].(time.Duration)
	return d
}
func (c Config) Strings(key string) []string { s, _ := c.values[key].([]string); return s }
func (c Config) StringMap(key string) map[string]string {
	m, _ := c.values[key].(map[string]string)
	return m
}

// Keys returns every key with a value.
func (c Config) Keys() []string {
	out := make([]string, 0, len(c.values))
	for k := range c.values {
		out = append(out, k)
	}
	return out
}

// checkValue reports whether v has the Go type of kind k.
func checkValue(k Kind, v any) error {
	ok := false
	switch k {
	case KindString, KindPath:
		_, ok = v.(string)
	case KindInt:
		_, ok = v.(int64)
	case KindFloat:
		_, ok = v.(float64)
	case KindBool:
		_, ok = v.(bool)
	case KindDuration:
		_, ok = v.(time.Duration)
	case KindStrings:
		_, ok = v.([]string)
	case KindStringMap:
		_, ok = v.(map[string]string)
	default:
		return fmt.Errorf("unknown kind %d", k)
	}
	if !ok {
		return fmt.Errorf("value %v (%T) does not match kind %d", v, v, k)
	}
	return nil
}
