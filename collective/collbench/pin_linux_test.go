//go:build linux

package collbench

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// TestPinThread: a pinned thread may run only on its CPU, and undo gives
// it back the process's set.
func TestPinThread(t *testing.T) {
	cpus, err := allowedCPUs()
	if err != nil || len(cpus) == 0 {
		t.Fatalf("allowedCPUs = %v, %v", cpus, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		want := cpus[len(cpus)-1]
		undo, err := pinThread(want)
		if err != nil {
			t.Error(err)
			return
		}
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(0, &set); err != nil || set.Count() != 1 || !set.IsSet(want) {
			t.Errorf("pinned to CPU %d: affinity has %d CPUs (CPU %d set: %v), err %v", want, set.Count(), want, set.IsSet(want), err)
		}
		runtime.Gosched()
		undo()
		runtime.LockOSThread() // the same thread, to look at it again
		defer runtime.UnlockOSThread()
		if err := unix.SchedGetaffinity(0, &set); err != nil || set.Count() != len(cpus) {
			t.Errorf("after undo: affinity has %d CPUs, want %d (err %v)", set.Count(), len(cpus), err)
		}
	}()
	<-done
}
