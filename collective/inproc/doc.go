// Package inproc is the in-process collective.Transport: the ranks of a
// ring are goroutines of one process and messages travel over Go channels.
// It is what the collective tests and single-machine runs use, and it
// carries fault hooks (closing one rank) for failure tests.
//
//	net := inproc.NewNetwork(4, 2) // 4 ranks, 2 channels
//	t0 := net.Transport(0)
package inproc
