package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/nightjar-backup/nightjar/core"
	"github.com/nightjar-backup/nightjar/core/engine"
)

func (a *app) restoreCmd() *cobra.Command {
	var sinkName, snapshot, artifact, to string
	var identities []string
	var force bool
	cmd := &cobra.Command{
		Use:   "restore -c FILE --to DIR [--snapshot ID|latest] [--artifact NAME]",
		Short: "Restore a snapshot's artifacts into a folder (tree → DIR/<source>/, sqlite → DIR/<source>)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if to == "" {
				return fmt.Errorf("%w: --to DIR is required", core.ErrUsage)
			}
			b, sink, ms, err := a.listSink(ctx, sinkName, identities)
			if err != nil {
				return err
			}
			defer b.Close()
			sel, err := selectSnapshots(ms, snapshot, false, sink.Name)
			if err != nil {
				return err
			}
			m := sel[0]
			arts := m.Artifacts
			if artifact != "" {
				art, ok := m.Artifact(artifact)
				if !ok {
					return fmt.Errorf("%w: snapshot %s has no artifact %q", core.ErrUsage, m.ID, artifact)
				}
				arts = []core.Artifact{*art}
			}
			if err := os.MkdirAll(to, 0o755); err != nil {
				return err
			}
			dec := engine.RegistryDecoders(a.reg, b.Env)
			for i := range arts {
				art := &arts[i]
				dest, err := restoreArtifact(cmd, b, sink, m, art, dec, to, force)
				if err != nil {
					return fmt.Errorf("restore %s from snapshot %s: %w", art.Name, m.ID, err)
				}
				fmt.Fprintf(a.stdout, "restored %s (%s) from snapshot %s to %s\n", art.Name, core.HumanBytes(art.Size), m.ID, dest)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&sinkName, "sink", "", "sink name (default: the first sink)")
	f.StringVar(&snapshot, "snapshot", "latest", "snapshot id or latest")
	f.StringVar(&artifact, "artifact", "", "restore only this artifact (a source name)")
	f.StringVar(&to, "to", "", "target folder")
	f.StringArrayVar(&identities, "identity", nil, "age identity file for encrypted artifacts (repeatable)")
	f.BoolVar(&force, "force", false, "overwrite existing files")
	return cmd
}

// restoreArtifact hands the decoded, checked stream to the source that made it; when the
// config has no such source, it writes the raw artifact file.
func restoreArtifact(cmd *cobra.Command, b *engine.Built, sink engine.NamedSink, m *core.Manifest, art *core.Artifact,
	dec engine.DecoderFunc, to string, force bool) (string, error) {
	ctx := cmd.Context()
	r, err := engine.OpenRaw(ctx, sink.Sink, m, art, dec)
	if err != nil {
		return "", err
	}
	defer r.Close()
	src, ok := b.Sources[art.Name]
	restorer, isRestorer := src.(core.Restorer)
	if ok && isRestorer && src.Describe().Kind == art.Source {
		if err := restorer.Restore(ctx, r, to, core.RestoreOptions{Force: force}); err != nil {
			return "", err
		}
		// The restorer may stop at the format's end marker; read the rest so the raw hash
		// is checked over every byte.
		if err := engine.Drain(r); err != nil {
			return "", err
		}
		return filepath.Join(to, art.Name), nil
	}
	dest := filepath.Join(to, rawName(art))
	return dest, writeRaw(r, dest, force)
}

// rawName is the artifact's file name before transforms.
func rawName(art *core.Artifact) string {
	name := art.Object
	for range art.Transforms {
		name = name[:len(name)-len(filepath.Ext(name))]
	}
	return filepath.Base(name)
}

func writeRaw(r io.Reader, dest string, force bool) error {
	if _, err := os.Lstat(dest); err == nil && !force {
		return fmt.Errorf("%s exists; pass --force to overwrite", dest)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dest), ".nightjar-restore-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, r); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dest)
}
