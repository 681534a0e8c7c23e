package coordinator

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/loomtrain/loom/api"
)

func initManifest(t *testing.T, name, init string) api.Manifest {
	t.Helper()
	m, err := api.ParseManifest(name+".yaml", []byte(fmt.Sprintf("name: %s\nrecipe: vila\nmodel: {size: tiny}\ndatasets: [{name: d, uri: \"s3://bkt/d\"}]\nglobal_batch: 2\nstages: [{name: s, steps: 100}]\ncheckpoint: {interval: 10, keep: 1}\n%s", name, init)))
	if err != nil {
		t.Fatal(err)
	}
	return *m
}

func ckpt(step int64) Checkpoint {
	return Checkpoint{Step: step, Objects: []ObjectInfo{{Path: fmt.Sprintf("ck/base/step-%d/manifest.json", step), SHA256: strings.Repeat("b", 64), Size: 9}}}
}

// A job whose init block names another job starts from that job's
// committed checkpoint: the coordinator records which one at submit, pins it
// against retention, and refuses a job or step that has none.
func TestSubmitResolvesInitJobs(t *testing.T) {
	s := NewState()
	now := time.Unix(100, 0)
	if r := s.apply(&Command{Submit: &Submit{Manifest: initManifest(t, "base", "")}, Time: now}); r.Err() != nil {
		t.Fatal(r.Err())
	}
	for _, c := range []struct {
		name, init, err string
	}{
		{"no-job", "init: {llm: {job: nobody}}\n", `init.llm.job: no job named "nobody"`},
		{"no-ckpt", "init: {llm: {job: base}}\n", `init.llm: job "base" has no committed checkpoint`},
	} {
		r := s.apply(&Command{Submit: &Submit{Manifest: initManifest(t, c.name, c.init)}, Time: now})
		if r.Err() == nil || !strings.Contains(r.Err().Error(), c.err) {
			t.Errorf("%s: submit = %v, want an error containing %q", c.name, r.Err(), c.err)
		}
		if _, ok := s.Jobs[c.name]; ok {
			t.Errorf("%s: refused job was stored", c.name)
		}
	}
	base := s.Jobs["base"]
	base.Checkpoints = []Checkpoint{ckpt(10), ckpt(20)}

	r := s.apply(&Command{Submit: &Submit{Manifest: initManifest(t, "missing-step", "init: {llm: {job: base, step: 15}}\n")}, Time: now})
	if r.Err() == nil || !strings.Contains(r.Err().Error(), "no committed checkpoint at step 15 (retained: [10 20])") {
		t.Fatalf("submit at a missing step = %v", r.Err())
	}
	if len(base.Pinned) != 0 {
		t.Fatalf("a refused submit pinned %v", base.Pinned)
	}

	m := initManifest(t, "child", "init:\n  llm: {job: base, step: 10}\n  vision: {job: base}\n")
	if r := s.apply(&Command{Submit: &Submit{Manifest: m}, Time: now}); r.Err() != nil {
		t.Fatal(r.Err())
	}
	child := s.Jobs["child"].Manifest
	if got := child.Init["llm"].Checkpoint; got == nil || got.Step != 10 || got.Objects[0].Path != "ck/base/step-10/manifest.json" {
		t.Fatalf("init.llm resolved to %+v", got)
	}
	if got := child.Init["vision"].Checkpoint; got == nil || got.Step != 20 {
		t.Fatalf("init.vision (the last checkpoint) resolved to %+v", got)
	}
	if fmt.Sprint(base.Pinned) != "[10 20]" {
		t.Fatalf("pinned %v, want [10 20]", base.Pinned)
	}
	// Retention keeps the pinned step 10 although keep is 1.
	ends := stageEnds(&base.Manifest)
	for _, p := range base.Pinned {
		ends[p] = true
	}
	kept, dropped := Retain(append(base.Checkpoints, ckpt(30)), 1, ends, nil)
	if len(kept) != 3 || len(dropped) != 0 {
		t.Fatalf("kept %v dropped %v: pinned checkpoints must stay", kept, dropped)
	}
}
