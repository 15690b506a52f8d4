package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/nightjar-backup/nightjar/core"
)

func (a *app) snapshotsCmd() *cobra.Command {
	var sinkName string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "snapshots -c FILE [--sink NAME]",
		Short: "List the complete snapshots in a sink, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			b, sink, ms, err := a.listSink(ctx, sinkName, nil)
			if err != nil {
				return err
			}
			defer b.Close()
			if asJSON {
				if ms == nil {
					ms = []*core.Manifest{}
				}
				return writeJSON(a.stdout, ms)
			}
			if len(ms) == 0 {
				fmt.Fprintf(a.stdout, "sink %q has no complete snapshot\n", sink.Name)
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tFINISHED\tHOST\tSTORED\tARTIFACTS")
			for _, m := range ms {
				var names []string
				for _, art := range m.Artifacts {
					names = append(names, art.Name)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.ID, m.Finished.Format("2006-01-02 15:04:05Z"), m.Host,
					core.HumanBytes(m.TotalSize()), strings.Join(names, ", "))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&sinkName, "sink", "", "sink name (default: the first sink)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the manifests as a JSON array, newest first")
	return cmd
}
