package core

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"
)

// ManifestFormat is the value of Manifest.Format for this version of the layout.
const ManifestFormat = "nightjar.manifest/v1"

// ManifestName is the object name of a snapshot's manifest, beside its artifacts.
const ManifestName = "manifest.json"

// Manifest describes one complete snapshot in one sink. It is written last: a snapshot
// whose manifest is missing is incomplete and never listed. It never holds a secret.
type Manifest struct {
	Format    string     `json:"format"`
	ID        SnapshotID `json:"id"`
	Pipeline  string     `json:"pipeline"`
	Host      string     `json:"host"`
	Started   time.Time  `json:"started"`
	Finished  time.Time  `json:"finished"`
	Tags      []string   `json:"tags,omitempty"`
	Artifacts []Artifact `json:"artifacts"`
}

// Artifact is one source's output inside a snapshot.
type Artifact struct {
	Name         string              `json:"name"`   // the source's name
	Source       string              `json:"source"` // the source's type
	Object       string              `json:"object"` // key relative to the snapshot folder
	Size         int64               `json:"size"`   // raw bytes, before transforms
	SHA256       string              `json:"sha256"` // of the raw bytes
	StoredSize   int64               `json:"stored_size"`
	StoredSHA256 string              `json:"stored_sha256"`
	Transforms   []map[string]string `json:"transforms"` // in encode order, each with "type"
	Meta         map[string]string   `json:"meta,omitempty"`
	Ref          string              `json:"ref,omitempty"` // sink-specific reference (e.g. a restic snapshot id)
}

// TotalSize is the sum of the artifacts' stored sizes.
func (m *Manifest) TotalSize() int64 {
	var n int64
	for _, a := range m.Artifacts {
		n += a.StoredSize
	}
	return n
}

// Artifact returns the artifact with the given name.
func (m *Manifest) Artifact(name string) (*Artifact, bool) {
	for i := range m.Artifacts {
		if m.Artifacts[i].Name == name {
			return &m.Artifacts[i], true
		}
	}
	return nil, false
}

// DecodeManifest parses and checks a manifest.
func DecodeManifest(b []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decode manifest: %w", err)
	}
	if m.Format != ManifestFormat {
		return nil, fmt.Errorf("decode manifest: unknown format %q (this nightjar reads %q)", m.Format, ManifestFormat)
	}
	if _, err := ParseSnapshotID(string(m.ID)); err != nil {
		return nil, fmt.Errorf("decode manifest: %w", err)
	}
	return &m, nil
}

// Encode renders the manifest as indented JSON.
func (m *Manifest) Encode() ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// SortNewestFirst orders manifests by id, newest first. Ids sort by time.
func SortNewestFirst(ms []*Manifest) {
	sort.SliceStable(ms, func(i, j int) bool { return ms[i].ID > ms[j].ID })
}
