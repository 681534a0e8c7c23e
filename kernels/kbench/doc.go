// Package kbench holds the benchmarks of package kernels behind
// `loom bench attention` and `loom bench step` (docs/BENCHMARKS.md).
//
// Every result is a ratio against a baseline measured in the same run:
// attention's FLOP rate against the sgemm FLOP rate, and a training step
// against the same model in PyTorch run as a child process
// (/usr/bin/python3, OPENBLAS_CORETYPE=SkylakeX, the same thread count).
// The machines are shared and noisy, so each contender runs several times,
// interleaved, and the best time of each counts.
package kbench
