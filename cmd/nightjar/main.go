// Command nightjar runs config-driven backup pipelines: sources → transforms → sinks, with
// WASM retention policies. See docs/ and `nightjar --help`.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/nightjar-backup/nightjar/core"
	"github.com/nightjar-backup/nightjar/core/pluginhost"
	"github.com/nightjar-backup/nightjar/plugins/all"
)

// Exit codes, fixed by docs/ and scripts (DESIGN §10).
const (
	exitOK      = 0
	exitFailed  = 1
	exitUsage   = 2
	exitPartial = 3
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// app is what every command shares; there is no package-level mutable state.
type app struct {
	reg    *core.Registry
	v      *viper.Viper
	stdout io.Writer
	stderr io.Writer
	log    *slog.Logger
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// A soft heap limit keeps the peak RSS flat (memlimit.go); GOMEMLIMIT overrides it.
	if os.Getenv("GOMEMLIMIT") == "" {
		followLiveHeap(ctx)
	}
	// On a signal the run is cancelled and stops its plugins itself; should a plugin call
	// hang anyway, every plugin process is killed after a grace period.
	context.AfterFunc(ctx, func() { time.AfterFunc(10*time.Second, pluginhost.CleanupClients) })
	code := execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	pluginhost.CleanupClients()
	os.Exit(code)
}

func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return executeWith(ctx, all.Registry(), args, stdout, stderr)
}

// executeWith runs the CLI with the given plugins (tests add instrumented ones).
func executeWith(ctx context.Context, reg *core.Registry, args []string, stdout, stderr io.Writer) int {
	a := &app{reg: reg, v: viper.New(), stdout: stdout, stderr: stderr}
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	code := exitCode(err)
	var silent silentError
	if !errors.As(err, &silent) {
		fmt.Fprintf(stderr, "nightjar: %v\n", err)
	}
	return code
}

// silentError carries an exit code for an error already reported.
type silentError struct {
	code int
	err  error
}

func (e silentError) Error() string { return e.err.Error() }
func (e silentError) Unwrap() error { return e.err }

func exitCode(err error) int {
	var s silentError
	switch {
	case errors.As(err, &s):
		return s.code
	case core.IsConfigError(err), errors.Is(err, core.ErrUsage), isCobraUsage(err):
		return exitUsage
	case errors.Is(err, core.ErrPartial):
		return exitPartial
	default:
		return exitFailed
	}
}

func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "flag needs an argument",
		"invalid argument", "accepts ", "requires at least", "required flag"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "nightjar",
		Short:         "Config-driven backups: sources → zstd/age → local, S3, restic and plugin sinks, with WASM retention",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return a.setupLogging()
		},
	}
	pf := root.PersistentFlags()
	pf.StringP("config", "c", "", "pipeline config file (env NIGHTJAR_CONFIG)")
	pf.String("log-level", "info", "log level: debug, info, warn, error (env NIGHTJAR_LOG_LEVEL)")
	pf.String("log-format", "text", "log format: text or json (env NIGHTJAR_LOG_FORMAT)")
	pf.BoolP("quiet", "q", false, "only warnings and errors; no progress display")
	root.AddCommand(a.docsCmd()) // hidden: generates docs/CONFIG.md
	a.v.SetEnvPrefix("NIGHTJAR")
	a.v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	a.v.AutomaticEnv()
	_ = a.v.BindPFlags(pf)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return fmt.Errorf("%w: %v", core.ErrUsage, err) })
	root.AddCommand(a.runCmd(), a.snapshotsCmd(), a.restoreCmd(), a.verifyCmd(), a.configCmd(), a.keygenCmd(), a.versionCmd())
	root.AddCommand(a.pluginsCmd())
	root.AddCommand(a.pruneCmd(), a.policyCmd())
	return root
}

func (a *app) setupLogging() error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(a.v.GetString("log-level"))); err != nil {
		return fmt.Errorf("%w: --log-level: %v", core.ErrUsage, err)
	}
	if a.v.GetBool("quiet") && level < slog.LevelWarn {
		level = slog.LevelWarn
	}
	opts := &slog.HandlerOptions{Level: level}
	switch f := a.v.GetString("log-format"); f {
	case "text":
		a.log = slog.New(slog.NewTextHandler(a.stderr, opts))
	case "json":
		a.log = slog.New(slog.NewJSONHandler(a.stderr, opts))
	default:
		return fmt.Errorf("%w: --log-format: expected text or json, got %q", core.ErrUsage, f)
	}
	a.reg.SetSinkResolver(pluginhost.New(a.log, nil).Resolver())
	return nil
}
