// Package coordinator is Loom's control plane: a replicated state machine
// of jobs, workers and assignments, the scheduler that drives it, and the
// gRPC server and node wiring that run it on Raft.
//
// The layers, from pure to I/O:
//
//   - State (state.go) is the state machine. Apply(*Command) is a pure
//     function of the state and the command: no clock, no I/O, no map-order
//     dependence. Commands carry their time and an optional ID; a command
//     whose ID was applied before returns the first result and changes
//     nothing, so a write retried after raft.ErrLeadershipLost applies once.
//   - Plan (schedule.go) is the leader's scheduler: state and time in,
//     commands and checkpoint deletions out. Gang scheduling in the elastic
//     range, failure handling (lost, restarted or stalled ranks → a new
//     generation from the last committed checkpoint), stage advancement,
//     completion and checkpoint retention.
//   - MetricHistory (history.go) is each job's metric history inside the
//     state: rank 0's per-step scalars, bounded and downsampled, served by
//     Jobs.GetMetrics (metrics_api.go).
//   - FSM (fsm.go) adapts State to hashicorp/raft.
//   - Server (server.go) is the gRPC API (api/loompb): any node answers
//     reads from its replica; writes go to the leader, forwarded by
//     followers. Bearer-token auth for user calls.
//   - Node (node.go) wires it together with the Raft node, the worker
//     registry watch (FromRegistry adapts coordinator/registry) and the
//     leader loop, which starts only after Barrier and applies its
//     decisions only while leading (ApplyAsLeader).
//
// Each job keeps its committed checkpoints, its current generation (workers
// in rank order) and a short history of generations. Small interfaces are
// declared here, where they are used: Raft (coordinator/consensus.Node),
// Registry, ObjectDeleter. coordbench measures all of it at scale
// (`loom bench coordinator`); docs/coordinator.md is the operator's guide.
//
// Scenario tests live in testdata/*.txt (see TestScripts); run
// `go test ./coordinator -run TestScripts -update` to rewrite their traces.
package coordinator
