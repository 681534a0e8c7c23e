package kernels

import "testing"

// TestRopeRows: the angle table has a row per position value for batches
// of sequences from 0, and a row per entry otherwise; every row maps to
// the entry of its own position.
func TestRopeRows(t *testing.T) {
	for _, c := range []struct {
		rows int
		pos  []int32
		n    int
	}{
		{12, []int32{0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3}, 4}, // 3 sequences of 4
		{8, []int32{0, 1, 2, 3}, 4},                          // pos repeats across the batch
		{3, []int32{5, 9, 7}, 3},                             // few rows, large positions
		{4, []int32{0, -1, 2, 3}, 4},                         // a negative position: per entry
		{6, []int32{0, 1, 0, 1, 0, 1}, 2},
	} {
		n, row := ropeRows(c.rows, c.pos)
		if n != c.n {
			t.Errorf("ropeRows(%d, %v) = %d rows, want %d", c.rows, c.pos, n, c.n)
		}
		for r := range c.rows {
			if got, want := ropePos(row(r), c.pos, n, c.rows), c.pos[r%len(c.pos)]; got != want {
				t.Errorf("ropeRows(%d, %v): row %d reads position %d, want %d", c.rows, c.pos, r, got, want)
			}
		}
	}
}
