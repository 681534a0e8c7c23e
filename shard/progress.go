package shard

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Progress tracks a long job (bytes of input consumed out of a known
// total, rows produced) and renders a one-line bar with rate and ETA. It is
// pure: the caller passes the time, so rendering is testable.
type Progress struct {
	Total int64 // input bytes, 0 if unknown
	start time.Time
	Done  int64
	Rows  int64
	now   time.Time
}

// NewProgress starts tracking at time start.
func NewProgress(total int64, start time.Time) *Progress {
	return &Progress{Total: total, start: start, now: start}
}

// Update records the position at time now.
func (p *Progress) Update(done, rows int64, now time.Time) {
	p.Done, p.Rows, p.now = done, rows, now
}

// Rate returns input bytes and rows per second so far.
func (p *Progress) Rate() (bytesPerSec, rowsPerSec float64) {
	el := p.now.Sub(p.start).Seconds()
	if el <= 0 {
		return 0, 0
	}
	return float64(p.Done) / el, float64(p.Rows) / el
}

// ETA returns the estimated time left, or -1 when it is unknown.
func (p *Progress) ETA() time.Duration {
	bps, _ := p.Rate()
	if p.Total <= 0 || bps <= 0 {
		return -1
	}
	left := float64(p.Total-p.Done) / bps
	if left < 0 {
		left = 0
	}
	return time.Duration(left * float64(time.Second)).Round(time.Second)
}

// Bar renders "[=====>    ]  52.1%  1.2 GiB/2.3 GiB  45.0 MiB/s  1234 rows/s  ETA 25s"
// in about width columns.
func (p *Progress) Bar(width int) string {
	bps, rps := p.Rate()
	var b strings.Builder
	if p.Total > 0 {
		frac := min(float64(p.Done)/float64(p.Total), 1)
		n := max(width-70, 10)
		fill := int(frac * float64(n))
		b.WriteString("[")
		b.WriteString(strings.Repeat("=", fill))
		if fill < n {
			b.WriteString(">")
			b.WriteString(strings.Repeat(" ", n-fill-1))
		}
		fmt.Fprintf(&b, "] %5.1f%%  %s/%s", 100*frac, HumanBytes(p.Done), HumanBytes(p.Total))
	} else {
		fmt.Fprintf(&b, "%s", HumanBytes(p.Done))
	}
	fmt.Fprintf(&b, "  %s/s  %.0f rows/s", HumanBytes(int64(bps)), rps)
	if eta := p.ETA(); eta >= 0 {
		fmt.Fprintf(&b, "  ETA %v", eta)
	}
	return b.String()
}

// HumanBytes formats a byte count with binary units.
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// ParseBytes parses a size such as "256MiB", "4 MB", "512k" or "1048576".
// Both decimal (kB, MB, GB) and binary (KiB, MiB, GiB) units are accepted;
// a bare k, m or g is binary.
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := len(t)
	for i > 0 && (t[i-1] < '0' || t[i-1] > '9') {
		i--
	}
	num, unit := strings.TrimSpace(t[:i]), strings.ToLower(strings.TrimSpace(t[i:]))
	var n int64
	if _, err := fmt.Sscanf(num, "%d", &n); err != nil || n < 0 || fmt.Sprint(n) != num {
		return 0, fmt.Errorf("size %q: want a number with an optional unit (e.g. 256MiB)", s)
	}
	mult := map[string]int64{"": 1, "b": 1,
		"k": 1 << 10, "kib": 1 << 10, "kb": 1000,
		"m": 1 << 20, "mib": 1 << 20, "mb": 1000 * 1000,
		"g": 1 << 30, "gib": 1 << 30, "gb": 1000 * 1000 * 1000}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("size %q: unknown unit %q", s, unit)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return n * mult, nil
}
