package main

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/loomtrain/loom/api/loompb"
)

// dotRows returns, for each braille dot column of the plot's chart lines,
// the topmost dot row set (-1: none).
func dotRows(t *testing.T, lines []string, height int) []int {
	t.Helper()
	var grid [][]rune
	for _, l := range lines[:height] {
		_, chart, ok := strings.Cut(l, "┤")
		if !ok {
			t.Fatalf("chart line %q has no axis", l)
		}
		grid = append(grid, []rune(chart))
	}
	bits := [2][4]rune{{0x01, 0x02, 0x04, 0x40}, {0x08, 0x10, 0x20, 0x80}}
	cols := 2 * len(grid[0])
	out := make([]int, cols)
	for c := range out {
		out[c] = -1
		for r := 0; r < 4*height && out[c] < 0; r++ {
			if (grid[r/4][c/2]-0x2800)&bits[c%2][r%4] != 0 {
				out[c] = r
			}
		}
	}
	return out
}

func TestPlotLinesFollowsTheValues(t *testing.T) {
	var pts []*loompb.MetricPoint
	for s := int64(1); s <= 200; s++ {
		pts = append(pts, &loompb.MetricPoint{Step: s, FirstStep: s, Value: 4 - 2*float64(s)/200, Steps: 1})
	}
	lines := plotLines(pts, 20, 4)
	// 200 steps in 40 dot columns: each column is the mean of 5 steps, so
	// the range is that of steps 1–5 (3.97) to 196–200 (2.02).
	if !strings.HasPrefix(strings.TrimSpace(lines[0]), "3.97 ┤") || !strings.HasPrefix(strings.TrimSpace(lines[3]), "2.02 ┤") {
		t.Fatalf("y labels: top %q, bottom %q; want 3.97 and 2.02", lines[0], lines[3])
	}
	if f := strings.Fields(lines[5]); len(f) != 2 || f[0] != "1" || f[1] != "200" {
		t.Errorf("step labels %q, want 1 and 200", lines[5])
	}
	rows := dotRows(t, lines, 4)
	if rows[0] != 0 || rows[len(rows)-1] != 15 {
		t.Fatalf("a falling loss starts at dot row %d and ends at %d, want 0 (top) and 15 (bottom): %v", rows[0], rows[len(rows)-1], rows)
	}
	for c := 1; c < len(rows); c++ {
		if rows[c] < rows[c-1] {
			t.Fatalf("dot column %d rises (row %d after %d) though the loss only falls: %v", c, rows[c], rows[c-1], rows)
		}
	}
}

func TestRenderLossPlotPerStage(t *testing.T) {
	j := &loompb.Job{Name: "j", Stages: 2, Stage: 1, StageName: "sft", ManifestYaml: []byte("name: j\nrecipe: vila\nmodel: {size: tiny}\ndatasets: [{name: d, uri: s3://data/coyo}]\nglobal_batch: 4\nstages: [{name: align, steps: 3}, {name: sft, steps: 2}]\n")}
	s := &loompb.MetricSeries{Name: "loss"}
	for st := int64(1); st <= 5; st++ {
		stage := int32(0)
		if st > 3 {
			stage = 1
		}
		v := 1.0 / float64(st)
		if st == 5 {
			v = math.NaN()
		}
		s.Points = append(s.Points, &loompb.MetricPoint{Step: st, FirstStep: st, Stage: stage, Value: v, Steps: 1})
	}
	var b bytes.Buffer
	renderLossPlot(&b, j, s)
	out := b.String()
	for _, want := range []string{"loss, stage 1/2 align: steps 1–3", "loss, stage 2/2 sft: steps 4–5", "non-finite: NaN at step 5"} {
		if !strings.Contains(out, want) {
			t.Errorf("plot lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	renderLossPlot(&b, j, nil)
	if b.Len() != 0 {
		t.Errorf("no history drew %q, want nothing", b.String())
	}
}
