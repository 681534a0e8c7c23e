// Package consensusbench times replicated applies (`loom bench raft`):
// MeasureApply through a localraft.Cluster's leader against MeasureFSMApply
// on the FSM alone as a baseline.
package consensusbench
