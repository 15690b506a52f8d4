// Package age is the encryption transform (filippo.io/age). Its output is a standard age
// file: `age -d -i key.txt` reads it.
package age

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"filippo.io/age"

	"github.com/nightjar-backup/nightjar/core"
)

// Register adds the age transform to r.
func Register(r *core.Registry) {
	r.AddTransform(core.TransformPlugin{
		Type: "age",
		Doc:  "Encrypts with age to one or more X25519 recipients (age1...). Restore and verify --identity need a matching identity file.",
		Fields: []core.Field{
			{Name: "recipients", Kind: core.KindStrings, Doc: "age recipients (public keys, age1...).", Example: `["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]`},
			{Name: "recipients_file", Kind: core.KindPath, Doc: "A file with one recipient per line (# comments allowed), as `age -R` reads."},
		},
		New: func(c *core.Component, _ core.Env) (core.Transform, error) {
			var rs []age.Recipient
			if list := c.Strings("recipients"); len(list) > 0 {
				parsed, err := age.ParseRecipients(strings.NewReader(strings.Join(list, "\n")))
				if err != nil {
					return nil, c.Errorf("recipients", "invalid age recipient: %v", err)
				}
				rs = append(rs, parsed...)
			}
			if p := c.String("recipients_file"); p != "" {
				b, err := os.ReadFile(p)
				if err != nil {
					return nil, c.Errorf("recipients_file", "cannot read: %v", err)
				}
				parsed, err := age.ParseRecipients(bytes.NewReader(b))
				if err != nil {
					return nil, c.Errorf("recipients_file", "%s: %v", p, err)
				}
				rs = append(rs, parsed...)
			}
			if len(rs) == 0 {
				return nil, c.Errorf("recipients", "at least one recipient is needed (recipients or recipients_file); make a key with `nightjar keygen`")
			}
			return &Transform{recipients: rs}, nil
		},
		FromDescriptor: func(_ map[string]string, env core.Env) (core.Transform, error) {
			return &Transform{identityFiles: env.Identities}, nil
		},
	})
}

// Transform encrypts to recipients and decrypts with identities.
type Transform struct {
	recipients    []age.Recipient
	identityFiles []string
}

// New returns a transform encrypting to recipients.
func New(recipients ...age.Recipient) *Transform { return &Transform{recipients: recipients} }

// NewDecoder returns a transform that decrypts with the identities in the given files.
func NewDecoder(identityFiles ...string) *Transform { return &Transform{identityFiles: identityFiles} }

func (t *Transform) Encode(w io.Writer) (io.WriteCloser, error) {
	if len(t.recipients) == 0 {
		return nil, errors.New("age: no recipients")
	}
	wc, err := age.Encrypt(w, t.recipients...)
	if err != nil {
		return nil, fmt.Errorf("age: %w", err)
	}
	return wc, nil
}

// ErrNoIdentity is returned when an encrypted artifact must be read without --identity.
var ErrNoIdentity = errors.New("the artifact is encrypted with age: pass --identity FILE (an age identity file, as made by `nightjar keygen` or age-keygen)")

func (t *Transform) Decode(r io.Reader) (io.ReadCloser, error) {
	if len(t.identityFiles) == 0 {
		return nil, ErrNoIdentity
	}
	var ids []age.Identity
	for _, p := range t.identityFiles {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("age: identity file: %w", err)
		}
		parsed, err := age.ParseIdentities(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("age: identity file %s: %w", p, err)
		}
		ids = append(ids, parsed...)
	}
	dr, err := age.Decrypt(r, ids...)
	if err != nil {
		return nil, fmt.Errorf("age: decrypt: %w", err)
	}
	return io.NopCloser(dr), nil
}

func (t *Transform) Ext() string { return ".age" }

func (t *Transform) Descriptor() map[string]string {
	return map[string]string{"type": "age", "recipients": strconv.Itoa(len(t.recipients))}
}
