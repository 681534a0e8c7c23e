//go:build !unix

package shard

// processCPU returns -1: this platform's CPU time is not measured.
func processCPU() float64 { return -1 }
