package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/nightjar-backup/nightjar/plugins/transform/zstd"
)

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintf(a.stdout, "nightjar %s (%s, %s/%s)\nzstd encoder: %s\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH, zstd.EncoderName)
			return nil
		},
	}
}
