// Package blob is the storage contract that nightjar's object sinks are built on: the local
// sink, the S3 sink and every external sink plugin implement Store, and nightjar's snapshot
// layout and commit protocol run on top of it.
//
// This package is part of the public SDK: it must not import anything from nightjar's core
// or plugins, and it changes only in backward-compatible ways.
package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ErrNotFound is returned (possibly wrapped) by Get and Delete when a key does not exist.
var ErrNotFound = errors.New("blob: not found")

// Store keeps objects under slash-separated keys.
//
// Contract, for implementers:
//   - Put is atomic: after it returns nil, Get returns exactly the bytes read from r; if it
//     returns an error (including r returning an error or ctx being cancelled), no object and
//     no partial object is visible under key, and a previous object under key is unchanged or
//     replaced whole. Put reads r until io.EOF and returns the number of bytes stored.
//   - Get returns the object's bytes from offset onwards; a missing key returns an error that
//     wraps ErrNotFound. The caller closes the reader.
//   - List calls fn for every complete object whose key starts with prefix, in any order,
//     sequentially from the calling goroutine. An error from fn stops the listing and is
//     returned. Objects being written by an unfinished Put are never listed.
//   - Delete removes key; deleting a missing key returns an error wrapping ErrNotFound.
//   - All methods may be called concurrently for different keys.
type Store interface {
	Put(ctx context.Context, key string, r io.Reader) (int64, error)
	Get(ctx context.Context, key string, offset int64) (io.ReadCloser, error)
	List(ctx context.Context, prefix string, fn func(key string, size int64) error) error
	Delete(ctx context.Context, key string) error
}

// ValidateKey reports whether key is a usable object key: non-empty, relative,
// slash-separated, without empty, "." or ".." elements. Stores call it on every key they
// are given so that no key can escape the store's root.
func ValidateKey(key string) error {
	if key == "" {
		return errors.New("blob: empty key")
	}
	if strings.HasPrefix(key, "/") || strings.Contains(key, "\\") {
		return fmt.Errorf("blob: invalid key %q: must be relative and use '/'", key)
	}
	for _, el := range strings.Split(key, "/") {
		if el == "" || el == "." || el == ".." {
			return fmt.Errorf("blob: invalid key %q: empty, '.' or '..' element", key)
		}
	}
	return nil
}
