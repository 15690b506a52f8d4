// Package retention runs WASM retention policies (ABI v1, docs/POLICY_GUIDE.md) in a
// wazero sandbox and applies core's guardrails to what they decide.
//
// A policy gets the list of a sink's complete snapshots on stdin and answers keep or
// delete, with a reason, for each one. It has no filesystem, environment, network or real
// clock, a memory limit and a time limit. Anything unexpected (a trap, a timeout, a non-zero
// exit, output that is not valid ABI v1, an unknown or a missing id) is an error and nothing
// is deleted. Whatever the policy says, the guardrails keep the newest complete snapshot and
// the one just written, and hold a plan that deletes more than max_delete_fraction of a
// sink's snapshots unless forced.
package retention
