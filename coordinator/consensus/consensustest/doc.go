// Package consensustest holds what tests and benchmarks of Raft-replicated
// code need: KV, a small key-value raft.FSM with snapshot and restore;
// Cluster, N consensus.Nodes on loopback TCP in one process with short
// timeouts, which can stop, restart from disk and add nodes; and
// MeasureApply / MeasureFSMApply, which time replicated applies against the
// FSM alone as a baseline (see `loom bench raft`).
package consensustest
