package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/api/loompb"
)

// The loss plot of `loom status JOB`: one small chart per stage, drawn
// with braille characters (2×4 dots per character cell).
const (
	plotWidth  = 56 // character cells
	plotHeight = 5  // character rows
)

// fetchLoss returns the job's loss history (nil when the coordinator has
// none or does not serve metric history).
func fetchLoss(ctx context.Context, jobs loompb.JobsClient, job string) *loompb.MetricSeries {
	resp, err := jobs.GetMetrics(ctx, &loompb.GetMetricsRequest{Job: job, Series: []string{"loss"}})
	if err != nil || len(resp.Series) == 0 {
		return nil
	}
	return resp.Series[0]
}

// renderLossPlot draws the loss of each stage of j that has points.
func renderLossPlot(w io.Writer, j *loompb.Job, s *loompb.MetricSeries) {
	if s == nil || len(s.Points) == 0 {
		return
	}
	byStage := map[int32][]*loompb.MetricPoint{}
	var order []int32
	for _, p := range s.Points {
		if _, ok := byStage[p.Stage]; !ok {
			order = append(order, p.Stage)
		}
		byStage[p.Stage] = append(byStage[p.Stage], p)
	}
	names := stageNames(j)
	for _, st := range order {
		pts := byStage[st]
		name := fmt.Sprintf("stage %d", st+1)
		if int(st) < len(names) {
			name = fmt.Sprintf("stage %d/%d %s", st+1, len(names), names[st])
		}
		fmt.Fprintf(w, "  loss, %s: steps %d–%d\n", name, pts[0].FirstStep, pts[len(pts)-1].Step)
		for _, line := range plotLines(pts, plotWidth, plotHeight) {
			fmt.Fprintln(w, "    "+line)
		}
	}
}

// stageNames are the stage names of the job's manifest; only the current
// one when the manifest does not parse.
func stageNames(j *loompb.Job) []string {
	if m, err := api.ParseManifest("job "+j.Name, j.ManifestYaml); err == nil {
		names := make([]string, len(m.Stages))
		for i, st := range m.Stages {
			names[i] = st.Name
		}
		return names
	}
	names := make([]string, j.Stages)
	if int(j.Stage) < len(names) {
		names[j.Stage] = j.StageName
	}
	return names
}

// plotLines draws the points as a braille line chart of width×height
// cells with the y range on the left and the steps underneath. Non-finite
// values are left out and named under the chart.
func plotLines(pts []*loompb.MetricPoint, width, height int) []string {
	cols := 2 * width
	rows := 4 * height
	// Bucket the points into the chart's dot columns by step.
	lo, hi := pts[0].FirstStep, pts[len(pts)-1].Step
	span := max(hi-lo+1, 1)
	vals := make([]float64, cols)
	n := make([]float64, cols)
	var bad []string
	for _, p := range pts {
		if math.IsNaN(p.Value) || math.IsInf(p.Value, 0) {
			if len(bad) < 3 {
				bad = append(bad, fmt.Sprintf("%v at step %d", p.Value, p.Step))
			}
			continue
		}
		c := int((p.Step - lo) * int64(cols) / span)
		c = min(c, cols-1)
		wt := float64(max(p.Steps, 1))
		vals[c] += p.Value * wt
		n[c] += wt
	}
	ymin, ymax := math.Inf(1), math.Inf(-1)
	for c := range vals {
		if n[c] > 0 {
			vals[c] /= n[c]
			ymin, ymax = math.Min(ymin, vals[c]), math.Max(ymax, vals[c])
		}
	}
	if math.IsInf(ymin, 0) {
		return []string{"(no finite values: " + strings.Join(bad, ", ") + ")"}
	}
	// Fewer points than dot columns: interpolate between them, so the
	// chart is a line rather than scattered dots.
	for c, prev := 0, -1; c < cols; c++ {
		if n[c] == 0 {
			continue
		}
		for k := prev + 1; prev >= 0 && k < c; k++ {
			vals[k] = vals[prev] + (vals[c]-vals[prev])*float64(k-prev)/float64(c-prev)
			n[k] = 1
		}
		prev = c
	}
	if ymax == ymin {
		ymax, ymin = ymax+0.5, ymin-0.5
	}
	dotRow := func(v float64) int { // 0 is the top
		r := int(math.Round((ymax - v) / (ymax - ymin) * float64(rows-1)))
		return min(max(r, 0), rows-1)
	}
	grid := make([][]rune, height)
	for i := range grid {
		grid[i] = make([]rune, width)
		for k := range grid[i] {
			grid[i][k] = 0x2800
		}
	}
	set := func(c, r int) {
		bits := [2][4]rune{{0x01, 0x02, 0x04, 0x40}, {0x08, 0x10, 0x20, 0x80}}
		grid[r/4][c/2] |= bits[c%2][r%4]
	}
	prev := -1
	for c := range vals {
		if n[c] == 0 {
			continue
		}
		r := dotRow(vals[c])
		set(c, r)
		if prev >= 0 { // join to the previous dot with a vertical run
			for k := min(prev, r) + 1; k < max(prev, r); k++ {
				set(c, k)
			}
		}
		prev = r
	}
	top, bottom := fmt.Sprintf("%.4g", ymax), fmt.Sprintf("%.4g", ymin)
	lw := max(len(top), len(bottom))
	out := make([]string, 0, height+2)
	for i, row := range grid {
		label := ""
		switch i {
		case 0:
			label = top
		case height - 1:
			label = bottom
		}
		out = append(out, fmt.Sprintf("%*s ┤%s", lw, label, string(row)))
	}
	axis := fmt.Sprintf("%*s └%s", lw, "", strings.Repeat("─", width))
	first, last := fmt.Sprint(lo), fmt.Sprint(hi)
	steps := fmt.Sprintf("%*s  %s%*s", lw, "", first, max(width-len(first), len(last)+1), last)
	out = append(out, axis, steps)
	if len(bad) > 0 {
		out = append(out, "non-finite: "+strings.Join(bad, ", "))
	}
	return out
}
