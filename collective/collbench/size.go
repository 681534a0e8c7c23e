package collbench

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseBytes parses a size such as "4096", "64KiB", "16MiB" or "1GiB"
// (binary units; "K", "M", "G" and "KB", "MB", "GB" mean the same).
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix []string
		m      int64
	}{{[]string{"GiB", "GB", "G"}, 1 << 30}, {[]string{"MiB", "MB", "M"}, 1 << 20}, {[]string{"KiB", "KB", "K"}, 1 << 10}, {[]string{"B"}, 1}} {
		found := false
		for _, suf := range u.suffix {
			if strings.HasSuffix(t, suf) {
				t, mult, found = strings.TrimSpace(strings.TrimSuffix(t, suf)), u.m, true
				break
			}
		}
		if found {
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q: want a non-negative integer with an optional KiB, MiB or GiB suffix", s)
	}
	return n * mult, nil
}

// ParseByteList parses a comma-separated list of sizes.
func ParseByteList(s string) ([]int64, error) {
	var out []int64
	for _, f := range strings.Split(s, ",") {
		n, err := ParseBytes(f)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}
