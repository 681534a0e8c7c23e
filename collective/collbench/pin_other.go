//go:build !linux

package collbench

import "errors"

var errNoPinning = errors.New("pinning threads to cores needs Linux's sched_setaffinity")

func allowedCPUs() ([]int, error) { return nil, errNoPinning }

func pinThread(int) (func(), error) { return nil, errNoPinning }
