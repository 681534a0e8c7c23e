//go:build unix

package shard

import "syscall"

// processCPU returns the user+system CPU seconds this process has used, or
// -1 if the platform cannot tell.
func processCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
