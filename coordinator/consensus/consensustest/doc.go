// Package consensustest starts a localraft.Cluster for a test: in
// t.TempDir(), closed when the test ends, with Raft's warnings sent to
// t.Log.
package consensustest
