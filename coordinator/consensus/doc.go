// Package consensus is the coordinator's Raft node: hashicorp/raft v1.7.3
// over raft-boltdb/v2 (behind raft.NewLogCache) with file snapshots, and a
// TCP transport that advertises a stable address.
//
// The caller supplies the raft.FSM (the coordinator's pure state machine)
// and gets a Node that replicates commands to it.
//
// # Addresses
//
// In a Kubernetes StatefulSet a pod keeps its name but not its IP, so the
// address written into the Raft configuration must be the pod's DNS name
// (coord-0.coord.loom.svc:7000). hashicorp's NewTCPTransport only advertises
// an IP; this package uses its own raft.StreamLayer whose Addr is
// Config.AdvertiseAddr verbatim and which resolves names on every dial.
//
// # Bootstrap, join, remove
//
// Open bootstraps only when the data dir holds no Raft state
// (raft.HasExistingState) and Config.Bootstrap is non-empty; every later
// start reads the configuration from the log, so the same Bootstrap list can
// be passed on every start. Two ways to form a cluster:
//
//   - all initial voters start with the same Bootstrap list (1, 3 or 5
//     peers; the StatefulSet way, since the names are known in advance);
//   - one node bootstraps alone, the others start with an empty Bootstrap
//     and the leader calls AddVoter for each.
//
// RemoveServer takes a voter out. Apply, AddVoter and RemoveServer work only
// on the leader and fail with raft.ErrNotLeader elsewhere: forward to
// Leader().
//
// # Leadership
//
// LeaderCh fires before the new leader's FSM has applied every committed
// entry (hashicorp/raft#509): call Barrier before acting on FSM state.
// raft.ErrLeadershipLost from Apply is indeterminate: the entry may still
// commit, so commands must carry IDs the FSM deduplicates.
//
// Package localraft has a key-value FSM and an in-process N-node cluster on
// loopback (consensustest.StartCluster starts one for a test);
// consensusbench has the apply-throughput measurement behind `loom bench raft`.
package consensus
