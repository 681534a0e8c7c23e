// Package localraft runs Raft-replicated code in one process, for tests and
// for `loom bench raft`: KV, a small key-value raft.FSM with snapshot and
// restore, and Cluster, N consensus.Nodes on loopback TCP with short
// timeouts, which can stop, restart from disk and add nodes.
package localraft
