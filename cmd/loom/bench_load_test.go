package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// Both ways of running the passes work end to end on a tiny model: in
// this process, and each pass in a loom process of its own.
func TestBenchLoad(t *testing.T) {
	for _, args := range [][]string{{"--in-process"}, {"--in-process=false", "--exe", loomBinary}} {
		out, err := run(t, append([]string{"bench", "load", "--test-model", "--shard-size", "40KB", "--repeat", "1", "--json"}, args...)...)
		if err != nil {
			t.Fatalf("loom bench load %v: %v", args, err)
		}
		var got struct {
			Result struct {
				Shards    int  `json:"shards"`
				InProcess bool `json:"in_process"`
				Passes    map[string][]struct {
					Child   bool  `json:"child"`
					RSSPeak int64 `json:"rss_peak"`
				} `json:"passes"`
				Compare []struct {
					Ratio float64 `json:"ratio_of_medians"`
				} `json:"compare"`
			} `json:"result"`
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		r := got.Result
		child := len(args) > 1
		if r.Shards < 3 || r.InProcess == child || len(r.Compare) != 3 || r.Compare[0].Ratio <= 0 ||
			len(r.Passes["load"]) != 1 || r.Passes["load"][0].Child != child {
			t.Fatalf("%v: %s", args, out)
		}
	}
	if _, err := run(t, "bench", "load", "--server", "nope"); err == nil || !strings.Contains(err.Error(), "--server") {
		t.Fatalf("--server nope: %v", err)
	}
}
