package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/nightjar-backup/nightjar/core/engine"
)

func (a *app) configCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Check or show a pipeline config"}
	cmd.AddCommand(&cobra.Command{
		Use:   "validate -c FILE",
		Short: "Check the config: every key, type and value, and that each component can be built",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			cfg, err := a.loadConfig(ctx)
			if err != nil {
				return err
			}
			b, err := engine.Build(ctx, cfg, a.reg, engine.NewEnv(cfg, a.log, nil), "")
			if err != nil {
				return err
			}
			defer b.Close()
			fmt.Fprintf(a.stdout, "%s: ok (pipeline %q: %d sources, %d transforms, %d sinks)\n",
				cfg.File, cfg.Pipeline, len(cfg.Sources), len(cfg.Transforms), len(cfg.Sinks))
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "show -c FILE",
		Short: "Print the effective config (defaults filled in, variables expanded, secrets as ***)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.loadConfig(cmd.Context())
			if err != nil {
				return err
			}
			out, err := yaml.Marshal(cfg.Redacted())
			if err != nil {
				return err
			}
			_, err = a.stdout.Write(out)
			return err
		},
	})
	return cmd
}
