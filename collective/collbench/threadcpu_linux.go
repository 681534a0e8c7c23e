//go:build linux

package collbench

import (
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// threadClock measures the CPU time of the calling OS thread, which a busy
// machine's other processes do not inflate (they take the CPU away; the
// thread's own CPU time stops while it waits). lock pins the goroutine to
// its thread for the duration.
type threadClock struct{}

const threadClockName = "thread CPU time"

func (threadClock) lock()   { runtime.LockOSThread() }
func (threadClock) unlock() { runtime.UnlockOSThread() }

func (threadClock) now() time.Duration {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
