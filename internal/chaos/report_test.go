package chaos

import (
	"strings"
	"testing"
	"time"
)

func TestReport(t *testing.T) {
	var r Report
	r.Add(Outcome{Fault: Fault{Kind: KillWorker}, Survived: true, Recover: 3 * time.Second, Restarts: 1})
	r.Add(Outcome{Fault: Fault{Kind: KillWorker}, Survived: true, Recover: 1 * time.Second})
	r.Add(Outcome{Fault: Fault{Kind: KillWorker}, Survived: true, Recover: 2 * time.Second})
	r.Add(Outcome{Fault: Fault{Kind: KillCoordinator}, Note: "job failed"})
	r.Add(Outcome{Fault: Fault{Kind: DiskFull}, Skipped: true, Unavailable: true, Note: "mount: permission denied"})
	st := r.Stats()
	if len(st) != 3 || st[0].Kind != KillCoordinator || st[1].Kind != KillWorker || st[2].Kind != DiskFull {
		t.Fatalf("Stats kinds: %+v", st)
	}
	w := st[1]
	if w.Injected != 3 || w.Survived != 3 || w.Min != time.Second || w.Median != 2*time.Second || w.Max != 3*time.Second {
		t.Errorf("worker-sigkill stats: %+v", w)
	}
	if st[0].Injected != 1 || st[0].Survived != 0 {
		t.Errorf("coordinator-sigkill stats: %+v", st[0])
	}
	var b strings.Builder
	r.Print(&b)
	for _, want := range []string{"| worker-sigkill | 3 | 3 | 0 | 1 | 1s | 2s | 3s |", "| coordinator-sigkill | 1 | 0 | 0 | 0 |",
		"| coordinator-disk-full | 0 | 0 | 1 | | not available here: mount: permission denied |"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}
