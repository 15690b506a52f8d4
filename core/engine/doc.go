// Package engine runs one pipeline: every source's bytes stream through the transform
// chain to every sink, each sink fed from its own bounded queue, raw and stored bytes hashed
// on the way; the manifest is committed last in each sink that received every artifact.
//
// It also reads snapshots back (restore, verify): an artifact is opened from a sink, its
// stored bytes checked against the manifest, decoded, and its raw bytes checked too.
package engine
