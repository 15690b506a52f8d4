package core

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"time"
)

// SnapshotID names one run's snapshot. IDs sort by time and are readable:
// 20261122T020013Z-7f3a9c (UTC start time, then 24 random bits).
type SnapshotID string

const idTimeLayout = "20060102T150405Z"

var idPattern = regexp.MustCompile(`^\d{8}T\d{6}Z-[0-9a-f]{6}$`)

// NewSnapshotID returns a fresh id for a snapshot started at t.
func NewSnapshotID(t time.Time) SnapshotID {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // never fails on supported platforms
	}
	return SnapshotID(t.UTC().Format(idTimeLayout) + "-" + hex.EncodeToString(b[:]))
}

// ParseSnapshotID checks that s is a well-formed snapshot id.
func ParseSnapshotID(s string) (SnapshotID, error) {
	if !idPattern.MatchString(s) {
		return "", fmt.Errorf("invalid snapshot id %q: expected the form 20261122T020013Z-7f3a9c", s)
	}
	if _, err := time.Parse(idTimeLayout, s[:16]); err != nil {
		return "", fmt.Errorf("invalid snapshot id %q: %w", s, err)
	}
	return SnapshotID(s), nil
}

// Time is the start time encoded in the id (zero if the id is malformed).
func (id SnapshotID) Time() time.Time {
	if len(id) < 16 {
		return time.Time{}
	}
	t, _ := time.Parse(idTimeLayout, string(id)[:16])
	return t
}

func (id SnapshotID) String() string { return string(id) }
