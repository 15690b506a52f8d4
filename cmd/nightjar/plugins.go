package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nightjar-backup/nightjar/core"
	"github.com/nightjar-backup/nightjar/core/config"
	"github.com/nightjar-backup/nightjar/core/pluginhost"
	"github.com/nightjar-backup/nightjar/sdk/blob"
)

// pluginInfo is one row of `nightjar plugins`.
type pluginInfo struct {
	Type     string `json:"type"`
	Path     string `json:"path"`
	Version  string `json:"version,omitempty"`
	Protocol []int  `json:"protocol,omitempty"`
	SHA256   string `json:"sha256,omitempty"`
	Pinned   bool   `json:"pinned"`
	Shadowed bool   `json:"shadowed,omitempty"`
	Error    string `json:"error,omitempty"`
}

func (a *app) pluginsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "plugins [-c FILE]",
		Short: "List the external sink plugins found (plugins.dir, $NIGHTJAR_PLUGIN_PATH, $XDG_DATA_HOME/nightjar/plugins)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			var settings core.PluginSettings
			if file := a.v.GetString("config"); file != "" {
				cfg, err := config.Load(ctx, file, a.reg)
				if err != nil {
					return err
				}
				settings = core.PluginSettings{Dir: cfg.Plugins.String("dir"), Pins: cfg.Plugins.StringMap("pins")}
			}
			host := pluginhost.New(a.log, nil)
			defer host.Close()
			var rows []pluginInfo
			for _, f := range host.Discover(settings) {
				rows = append(rows, describePlugin(ctx, host, f, settings))
			}
			if asJSON {
				if rows == nil {
					rows = []pluginInfo{}
				}
				return writeJSON(a.stdout, rows)
			}
			if len(rows) == 0 {
				fmt.Fprintf(a.stdout, "no sink plugins found in: %v\n", host.SearchDirs(settings))
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TYPE\tVERSION\tPROTOCOL\tPINNED\tPATH")
			for _, r := range rows {
				version, proto := r.Version, fmt.Sprint(r.Protocol)
				if r.Error != "" {
					version, proto = "?", "error: "+r.Error
				}
				path := r.Path
				if r.Shadowed {
					path += " (shadowed by an earlier folder)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\n", r.Type, version, proto, r.Pinned, path)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}

func describePlugin(ctx context.Context, host *pluginhost.Host, f pluginhost.Found, s core.PluginSettings) pluginInfo {
	r := pluginInfo{Type: f.Type, Path: f.Path, Shadowed: f.Shadowed}
	_, r.Pinned = s.Pins[f.Type]
	sum, err := pluginhost.FileSHA256(f.Path)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	r.SHA256 = sum
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var d blob.Description
	if d, err = host.Describe(ctx, f.Type, f.Path, s); err != nil {
		r.Error = err.Error()
		return r
	}
	r.Version, r.Protocol = d.Version, d.ProtocolVersions
	return r
}
