package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"filippo.io/age"
	"github.com/spf13/cobra"

	"github.com/nightjar-backup/nightjar/core"
)

func (a *app) keygenCmd() *cobra.Command {
	var out, recipientOut string
	cmd := &cobra.Command{
		Use:   "keygen -o FILE [--recipient-out FILE]",
		Short: "Write a new age identity (mode 0600, never overwritten) and print its recipient",
		Long: "keygen writes an age X25519 identity to FILE, in the format `age -d -i FILE` reads, and prints the\n" +
			"matching recipient (age1...) to put in the config's age transform. Keep the identity somewhere other\n" +
			"than the backups: without it nothing can be restored.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return fmt.Errorf("%w: -o FILE is required", core.ErrUsage)
			}
			id, err := age.GenerateX25519Identity()
			if err != nil {
				return err
			}
			body := fmt.Sprintf("# created: %s\n# public key: %s\n%s\n", time.Now().UTC().Format(time.RFC3339), id.Recipient(), id)
			if err := writeNew(out, body, 0o600); err != nil {
				return err
			}
			if recipientOut != "" {
				if err := writeNew(recipientOut, id.Recipient().String()+"\n", 0o644); err != nil {
					return err
				}
			}
			fmt.Fprintln(a.stdout, id.Recipient().String())
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "identity file to write")
	cmd.Flags().StringVar(&recipientOut, "recipient-out", "", "also write the recipient to this file")
	return cmd
}

// writeNew creates path exclusively: an existing key is never overwritten.
func writeNew(path, body string, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s already exists; refusing to overwrite a key", path)
	}
	if err != nil {
		return err
	}
	if _, err := f.WriteString(body); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}
