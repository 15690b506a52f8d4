// Package pluginhost runs external sink plugins: executables named nightjar-sink-<type>
// that serve the blob.v1 protocol (sdk/blob) through hashicorp/go-plugin.
//
// Discovery: a config sink whose type is not built in is looked up as nightjar-sink-<type>
// in plugins.dir, then each folder of $NIGHTJAR_PLUGIN_PATH (colon-separated), then
// $XDG_DATA_HOME/nightjar/plugins (default ~/.local/share/nightjar/plugins); the first
// executable found wins. plugins.pins may pin a type to the sha256 of its executable.
//
// Lifecycle: each configured sink gets its own plugin process, started when the pipeline
// is built and stopped by Close (engine.Build's closers). Plugins start without the host's
// environment (SkipHostEnv: they never see nightjar's secrets; their config arrives in
// Configure), talk over mutual TLS with ECDSA P-256 certificates made at each start
// (blob.AttachTLS), run in their own process group (a terminal's Ctrl-C reaches nightjar,
// which stops them in order), and log through nightjar's slog logger. A plugin that dies fails only its sink; the
// snapshot is never committed there because its manifest is written only after every
// object was stored and verified. sdk/blob.Serve makes a plugin exit when nightjar dies.
package pluginhost
