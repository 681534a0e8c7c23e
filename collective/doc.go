// Package collective moves float32 tensors between the ranks of a training
// job: ring all-reduce (sum or mean) built from reduce-scatter and
// all-gather, broadcast, barrier, a bucketed gradient all-reduce that
// overlaps the backward pass, and ring attention for sequences split across
// ranks.
//
// # Layers
//
//   - schedule.go is pure: which slice of which chunk each rank sends and
//     receives at which ring step (NCCL's ring, research/collectives.md §1).
//     It is tested by a socket-free simulator (SimulatePlans).
//   - Transport (transport.go) is the only thing that touches the network:
//     ordered point-to-point messages on (peer, channel) pairs. Package
//     collective/inproc implements it with Go channels, collective/grpctransport
//     with long-lived gRPC streams and a raw codec, and collective/tcptransport
//     over plain TCP (the benchmark baseline). collective/transporttest is the
//     conformance suite every implementation passes.
//   - Comm (comm.go) runs the plans over a Transport, checks every message's
//     (job, generation, op, sequence), and turns a dead or silent peer into
//     an *OpError within Config.Timeout on every rank.
//
// # Usage
//
//	tr := inproc.NewNetwork(world, 2).Transport(rank) // or grpctransport.New(...)
//	comm, err := collective.New(tr, collective.Config{Job: "j1", Generation: 3})
//	...
//	err = comm.AllReduce(ctx, grads, collective.Mean)
//
// Every rank must call the same operations in the same order; the sequence
// number carried by each message catches a rank that does not. After any
// error the Comm is aborted (its transport closed, so that the other ranks
// fail fast too) and must be rebuilt for the next generation.
//
// All ranks end an all-reduce with bit-identical buffers: each element is
// summed in one fixed order along the ring and the result is then copied,
// never re-added.
package collective
