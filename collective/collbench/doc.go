// Package collbench holds the benchmarks behind `loom bench allreduce` and
// `loom bench ringattention` (docs/BENCHMARKS.md). Every figure is measured
// against a baseline in the same run:
//
//   - AllReduce runs the identical ring schedule (collective.Comm) over the
//     gRPC transport with its raw codec, over plain TCP (tcptransport, the
//     denominator), and over gRPC with the default protobuf codec; and the
//     point-to-point rate of each transport between two ranks. All ranks
//     are goroutines of this process talking over loopback.
//   - RingAttention compares the zigzag layout with the naive contiguous
//     layout for causal ring attention (forward + backward), and measures
//     the heap per rank as the ring grows at fixed tokens per rank.
package collbench
