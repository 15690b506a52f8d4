package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/nightjar-backup/nightjar/core"
	"github.com/nightjar-backup/nightjar/core/engine"
)

func (a *app) verifyCmd() *cobra.Command {
	var sinkName, snapshot string
	var identities []string
	cmd := &cobra.Command{
		Use:   "verify -c FILE [--snapshot ID|latest|all] [--identity FILE]",
		Short: "Check stored sizes and hashes; with --identity also decode and check the raw artifacts",
		Long: "verify streams every stored object of the chosen snapshots and compares its size and sha256 with the manifest.\n" +
			"With --identity (or when no transform encrypts), it also decodes each artifact, checks the raw size and sha256,\n" +
			"and checks that the artifact parses (a tar that reads to its end, a database that passes an integrity check).\n" +
			"Exit 1 when anything is damaged.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			b, sink, ms, err := a.listSink(ctx, sinkName, identities)
			if err != nil {
				return err
			}
			defer b.Close()
			sel, err := selectSnapshots(ms, snapshot, true, sink.Name)
			if err != nil {
				return err
			}
			dec := engine.RegistryDecoders(a.reg, b.Env)
			damaged := 0
			for _, m := range sel {
				for i := range m.Artifacts {
					art := &m.Artifacts[i]
					level, err := verifyArtifact(cmd, b, sink, m, art, dec, len(identities) > 0)
					status := "ok (" + level + ")"
					if err != nil {
						damaged++
						status = "DAMAGED: " + err.Error()
					}
					fmt.Fprintf(a.stdout, "%s  %-20s %s\n", m.ID, art.Name, status)
				}
			}
			if damaged > 0 {
				return silentError{code: exitFailed, err: fmt.Errorf("%d artifact(s) failed verification", damaged)}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&sinkName, "sink", "", "sink name (default: the first sink)")
	f.StringVar(&snapshot, "snapshot", "latest", "snapshot id, latest or all")
	f.StringArrayVar(&identities, "identity", nil, "age identity file: also decode and check raw artifacts (repeatable)")
	return cmd
}

func encrypted(art *core.Artifact) bool {
	for _, t := range art.Transforms {
		if t["type"] == "age" {
			return true
		}
	}
	return false
}

// verifyArtifact checks one artifact as deeply as the keys at hand allow, and says how deep.
func verifyArtifact(cmd *cobra.Command, b *engine.Built, sink engine.NamedSink, m *core.Manifest, art *core.Artifact,
	dec engine.DecoderFunc, haveIdentity bool) (string, error) {
	ctx := cmd.Context()
	if encrypted(art) && !haveIdentity {
		r, err := engine.OpenStored(ctx, sink.Sink, m, art)
		if err != nil {
			return "", err
		}
		defer r.Close()
		return "stored size and sha256; pass --identity to check the contents", engine.Drain(r)
	}
	r, err := engine.OpenRaw(ctx, sink.Sink, m, art, dec)
	if err != nil {
		return "", err
	}
	defer r.Close()
	src, ok := b.Sources[art.Name]
	checker, isChecker := src.(core.Checker)
	if !ok || !isChecker || src.Describe().Kind != art.Source {
		return "stored and raw size and sha256", engine.Drain(r)
	}
	if err := checker.Check(ctx, r); err != nil {
		if errors.Is(err, engine.ErrDamaged) {
			return "", err
		}
		// The content may have failed to parse because it is damaged: prefer that error.
		if derr := engine.Drain(r); derr != nil && !errors.Is(derr, io.ErrClosedPipe) {
			return "", derr
		}
		return "", fmt.Errorf("%w: %s does not parse: %v", engine.ErrDamaged, art.Source, err)
	}
	return "stored and raw size and sha256, " + art.Source + " contents", engine.Drain(r)
}
