//go:build !linux

package collbench

import "time"

// threadClock falls back to wall time where per-thread CPU time is not
// available.
type threadClock struct{}

const threadClockName = "wall time"

var start = time.Now()

func (threadClock) lock()              {}
func (threadClock) unlock()            {}
func (threadClock) now() time.Duration { return time.Since(start) }
