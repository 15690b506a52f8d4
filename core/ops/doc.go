// Package ops is what runs around a pipeline run when an operator schedules it every night
// and forgets it: a per-pipeline lock (flock in state_dir), healthchecks-style pings,
// Prometheus textfile metrics and shell hooks. None of it may fail a backup that otherwise
// succeeded, except the lock and a failing `before` hook, which stop a run before it starts.
package ops
