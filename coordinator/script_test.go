package coordinator

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loomtrain/loom/api"
)

var update = flag.Bool("update", false, "rewrite the expected output of testdata/*.txt")

// TestScripts runs the scenario scripts in testdata/*.txt. Each block is a
// command line, a "----" line and the expected trace, ended by a blank line.
// Every command except status, history, assignment and snapshot also runs the
// scheduler (Plan) and applies what it decides, until it decides nothing.
// Run with -update to rewrite the expected traces.
func TestScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts in testdata: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) { runScript(t, f) })
	}
}

type scriptBlock struct {
	line int
	cmd  string
	want string
}

func parseScript(t *testing.T, path string) (blocks []scriptBlock, comments map[int][]string) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	comments = map[int][]string{}
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if strings.TrimSpace(l) == "" {
			continue
		}
		if strings.HasPrefix(l, "#") {
			comments[len(blocks)] = append(comments[len(blocks)], l)
			continue
		}
		blk := scriptBlock{line: i + 1, cmd: l}
		if i+1 >= len(lines) || lines[i+1] != "----" {
			t.Fatalf("%s:%d: want ---- after the command %q", path, i+1, l)
		}
		i += 2
		var want []string
		for ; i < len(lines) && lines[i] != ""; i++ {
			want = append(want, lines[i])
		}
		blk.want = strings.Join(want, "\n")
		blocks = append(blocks, blk)
	}
	return blocks, comments
}

func runScript(t *testing.T, path string) {
	blocks, comments := parseScript(t, path)
	h := &harness{t: t, s: NewState(), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	var rewritten bytes.Buffer
	for i, blk := range blocks {
		for _, c := range comments[i] {
			fmt.Fprintln(&rewritten, c)
		}
		h.out.Reset()
		h.run(blk.cmd)
		got := strings.TrimRight(h.out.String(), "\n")
		fmt.Fprintf(&rewritten, "%s\n----\n%s\n\n", blk.cmd, got)
		if !*update && got != blk.want {
			t.Errorf("%s:%d: %s\n got:\n%s\nwant:\n%s", path, blk.line, blk.cmd, got, blk.want)
		}
	}
	for _, c := range comments[len(blocks)] {
		fmt.Fprintln(&rewritten, c)
	}
	if *update {
		if err := os.WriteFile(path, rewritten.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

type harness struct {
	t    *testing.T
	s    *State
	now  time.Time
	last *Command // last command applied with an ID
	out  strings.Builder
}

func (h *harness) printf(format string, args ...any) { fmt.Fprintf(&h.out, format+"\n", args...) }

func (h *harness) apply(c *Command, who string) Result {
	if c.Time.IsZero() {
		c.Time = h.now
	}
	// Every command goes through the log encoding, as it would in Raft.
	b, err := c.Encode()
	if err != nil {
		h.t.Fatal(err)
	}
	dc, err := DecodeCommand(b)
	if err != nil {
		h.t.Fatal(err)
	}
	r := h.s.Apply(dc)
	res := "ok"
	if r.Code != OK {
		res = r.Code.String() + ": " + r.Msg
	}
	if r.Dup {
		res += " (duplicate: not applied again)"
	}
	if r.Skipped > 0 {
		res += fmt.Sprintf(" (%d stale reports skipped)", r.Skipped)
	}
	h.printf("%s %s -> %s", who, describeCommand(c), res)
	if c.ID != "" {
		h.last = c
	}
	return r
}

func (h *harness) plan() {
	for round := 0; round < 5; round++ {
		d := Plan(h.s, h.now)
		for _, del := range d.Deletions {
			_ = del // printed by the purge command
		}
		if len(d.Commands) == 0 {
			return
		}
		for _, c := range d.Commands {
			h.apply(c, "leader")
		}
	}
	h.printf("scheduler did not settle after 5 rounds")
}

func kv(args []string) (pos []string, kvs map[string]string) {
	kvs = map[string]string{}
	for _, a := range args {
		if k, v, ok := strings.Cut(a, "="); ok {
			kvs[k] = v
		} else {
			pos = append(pos, a)
		}
	}
	return pos, kvs
}

func (h *harness) int(kvs map[string]string, k string, def int64) int64 {
	v, ok := kvs[k]
	if !ok {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		h.t.Fatalf("%s=%q: %v", k, v, err)
	}
	return n
}

func (h *harness) run(line string) {
	f := strings.Fields(line)
	pos, kvs := kv(f[1:])
	arg := func(i int) string {
		if i >= len(pos) {
			h.t.Fatalf("%q: missing argument %d", line, i+1)
		}
		return pos[i]
	}
	planAfter := true
	switch f[0] {
	case "add-worker":
		id := arg(0)
		info := WorkerInfo{ID: id, Addr: orDefault(kvs["addr"], id+":9000"), Host: orDefault(kvs["host"], "h-"+id)}
		h.apply(&Command{WorkerUp: &WorkerUp{Worker: info}}, "registry")
	case "fail":
		h.apply(&Command{WorkerDown: &WorkerDown{WorkerID: arg(0), Reason: kvs["reason"]}}, "registry")
	case "submit":
		m, err := api.LoadManifest(filepath.Join("testdata", "manifests", arg(0)))
		if err != nil {
			h.printf("submit: %v", err)
			return
		}
		h.apply(&Command{ID: kvs["id"], Submit: &Submit{Manifest: *m}}, "user")
	case "tick":
		d, err := time.ParseDuration(arg(0))
		if err != nil {
			h.t.Fatal(err)
		}
		h.now = h.now.Add(d)
		h.printf("now +%s", h.now.Sub(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)))
	case "report":
		j := h.s.Jobs[arg(0)]
		if j == nil {
			h.t.Fatalf("%q: no job", line)
		}
		workers := j.Workers
		if w, ok := kvs["workers"]; ok {
			workers = strings.Split(w, ",")
		}
		var st time.Duration
		if v, ok := kvs["steptime"]; ok {
			st, _ = time.ParseDuration(v)
		}
		step := h.int(kvs, "step", 0)
		p := &Progress{}
		for _, w := range workers {
			rep := ProgressReport{WorkerID: w, Job: j.Name, Generation: h.int(kvs, "gen", j.Generation), Step: step,
				Samples: h.int(kvs, "samples", step*int64(j.Manifest.StageGlobalBatch(j.Stage))), StepTime: st, TokensPerSec: 1000}
			if l, ok := kvs["loss"]; ok {
				name, v, _ := strings.Cut(l, ":")
				x, _ := strconv.ParseFloat(v, 64)
				rep.Losses = map[string]Float{name: Float(x)}
			}
			p.Reports = append(p.Reports, rep)
		}
		h.apply(&Command{Progress: p}, "workers")
	case "commit":
		j := h.s.Jobs[arg(0)]
		if j == nil {
			h.t.Fatalf("%q: no job", line)
		}
		step := h.int(kvs, "step", 0)
		worker := kvs["worker"]
		if worker == "" && len(j.Workers) > 0 {
			worker = j.Workers[0]
		}
		path := fmt.Sprintf("ckpt/%s/step-%d/model.safetensors", j.Name, step)
		sum := sha256.Sum256([]byte(path))
		h.apply(&Command{ID: kvs["id"], Commit: &Commit{WorkerID: worker, Job: j.Name, Generation: h.int(kvs, "gen", j.Generation),
			Step: step, Samples: h.int(kvs, "samples", step*int64(j.Manifest.StageGlobalBatch(j.Stage))),
			Objects: []ObjectInfo{{Path: path, SHA256: hex.EncodeToString(sum[:]), Size: 1 << 20}}}}, "worker")
	case "worker-failed":
		// worker-failed JOB worker=W [gen=N] error=TEXT_WITH_UNDERSCORES_FOR_SPACES [kind=K ckpt=STEP]
		j := h.s.Jobs[arg(0)]
		if j == nil {
			h.t.Fatalf("%q: no job", line)
		}
		h.apply(&Command{ID: kvs["id"], WorkerFailed: &WorkerFailed{WorkerID: kvs["worker"], Job: j.Name,
			Generation: h.int(kvs, "gen", j.Generation), Error: strings.ReplaceAll(kvs["error"], "_", " "),
			Kind: FailureKind(kvs["kind"]), CheckpointStep: h.int(kvs, "ckpt", 0)}}, "worker")
	case "cancel":
		h.apply(&Command{ID: kvs["id"], Cancel: &Cancel{Job: arg(0)}}, "user")
	case "resume":
		h.apply(&Command{ID: kvs["id"], Resume: &Resume{Job: arg(0), FromStep: h.int(kvs, "from", 0)}}, "user")
	case "retry":
		if h.last == nil {
			h.t.Fatalf("retry: no command with an id yet")
		}
		c := *h.last
		c.Time = h.now
		h.apply(&c, "retry")
	case "purge":
		d := Plan(h.s, h.now)
		byJob := map[string][]int64{}
		for _, del := range d.Deletions {
			for _, o := range del.Checkpoint.Objects {
				h.printf("s3 delete %s", o.Path)
			}
			byJob[del.Job] = append(byJob[del.Job], del.Checkpoint.Step)
		}
		for _, name := range sortedKeys(byJob) {
			h.apply(&Command{Purge: &Purge{Job: name, Steps: byJob[name]}}, "leader")
		}
	case "assignment":
		a := h.s.Assignment(arg(0))
		if a.Idle {
			h.printf("%s: idle", arg(0))
			break
		}
		var peers []string
		for _, p := range a.Peers {
			peers = append(peers, fmt.Sprintf("%d=%s@%s", p.Rank, p.WorkerID, p.Addr))
		}
		restore := "none"
		if a.Restore != nil {
			restore = fmt.Sprintf("step %d (%d samples)", a.Restore.Step, a.Restore.Samples)
		}
		h.printf("%s: job %s stage %d gen %d rank %d/%d peers [%s] restore %s cursor %d steps %d..%d",
			arg(0), a.Job, a.Stage, a.Generation, a.Rank, len(a.Peers), strings.Join(peers, " "), restore, a.DataCursor, a.StartStep, a.StopStep)
		planAfter = false
	case "snapshot":
		b, err := h.s.Marshal()
		if err != nil {
			h.t.Fatal(err)
		}
		r, err := UnmarshalState(b)
		if err != nil {
			h.t.Fatal(err)
		}
		b2, _ := r.Marshal()
		if !bytes.Equal(b, b2) {
			h.printf("snapshot: restored state differs")
		} else {
			h.printf("snapshot: restored state equal")
		}
		h.s = r
		planAfter = false
	case "history":
		j := h.s.Jobs[arg(0)]
		if j == nil {
			h.t.Fatalf("%q: no job", line)
		}
		for _, g := range j.History {
			var peers []string
			for _, p := range g.Peers {
				peers = append(peers, fmt.Sprintf("%d=%s", p.Rank, p.WorkerID))
			}
			h.printf("%s", strings.TrimSpace(fmt.Sprintf("gen %d stage %d from step %d at +%s restart=%v [%s] %s", g.Generation, g.Stage, g.RestoreStep,
				g.Started.Sub(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), g.Restart, strings.Join(peers, " "), g.Reason)))
		}
		return
	case "status":
		h.status()
		return
	default:
		h.t.Fatalf("unknown script command %q", f[0])
	}
	if planAfter {
		h.plan()
	}
	h.status()
}

func (h *harness) status() {
	for _, j := range h.s.SortedJobs() {
		var cps, garbage []string
		for _, c := range j.Checkpoints {
			cps = append(cps, fmt.Sprint(c.Step))
		}
		for _, c := range j.Garbage {
			garbage = append(garbage, fmt.Sprint(c.Step))
		}
		line := fmt.Sprintf("  job %s: %s gen=%d stage=%d world=%d [%s] step=%d restarts=%d ckpts=[%s]",
			j.Name, j.State, j.Generation, j.Stage, len(j.Workers), strings.Join(j.Workers, " "), j.Step, j.Restarts, strings.Join(cps, " "))
		if len(garbage) > 0 {
			line += " garbage=[" + strings.Join(garbage, " ") + "]"
		}
		if len(j.Corrupt) > 0 {
			var cs []string
			for _, c := range j.Corrupt {
				cs = append(cs, fmt.Sprint(c.Step))
			}
			line += " corrupt=[" + strings.Join(cs, " ") + "]"
		}
		if j.Message != "" {
			line += " msg=" + strconv.Quote(j.Message)
		}
		h.printf("%s", line)
	}
	var ws []string
	for _, w := range h.s.SortedWorkers() {
		st := "free"
		switch {
		case !w.Up:
			st = "down"
		case w.Unhealthy:
			st = "unhealthy"
		case w.Job != "":
			st = w.Job
		}
		ws = append(ws, w.ID+":"+st)
	}
	if len(ws) > 0 {
		h.printf("  workers %s", strings.Join(ws, " "))
	}
}

func describeCommand(c *Command) string {
	var s string
	switch {
	case c.WorkerUp != nil:
		s = fmt.Sprintf("worker-up %s addr=%s host=%s", c.WorkerUp.Worker.ID, c.WorkerUp.Worker.Addr, c.WorkerUp.Worker.Host)
	case c.WorkerDown != nil:
		s = "worker-down " + c.WorkerDown.WorkerID
	case c.Submit != nil:
		s = "submit " + c.Submit.Manifest.Name
	case c.Cancel != nil:
		s = "cancel " + c.Cancel.Job
	case c.Resume != nil:
		s = fmt.Sprintf("resume %s from=%d", c.Resume.Job, c.Resume.FromStep)
	case c.Schedule != nil:
		x := c.Schedule
		s = fmt.Sprintf("schedule %s gen=%d stage=%d workers=[%s]", x.Job, x.Generation, x.Stage, strings.Join(x.Workers, " "))
		if x.Restart {
			s += " restart"
		}
		if x.Fallback {
			s += " fallback"
		}
		if len(x.Unhealthy) > 0 {
			s += " unhealthy=[" + strings.Join(x.Unhealthy, " ") + "]"
		}
		if x.Reason != "" {
			s += " reason=" + strconv.Quote(x.Reason)
		}
	case c.Progress != nil:
		steps := map[int64]int{}
		for _, r := range c.Progress.Reports {
			steps[r.Step]++
		}
		var parts []string
		keys := make([]int64, 0, len(steps))
		for k := range steps {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(a, b int) bool { return keys[a] < keys[b] })
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("step %d x%d", k, steps[k]))
		}
		s = "progress " + strings.Join(parts, ", ")
	case c.Commit != nil:
		s = fmt.Sprintf("commit %s step=%d gen=%d by %s", c.Commit.Job, c.Commit.Step, c.Commit.Generation, c.Commit.WorkerID)
	case c.WorkerFailed != nil:
		x := c.WorkerFailed
		s = fmt.Sprintf("worker-failed %s gen=%d by %s error=%q", x.Job, x.Generation, x.WorkerID, x.Error)
		if x.Kind != "" {
			s += fmt.Sprintf(" kind=%s", x.Kind)
		}
		if x.CheckpointStep != 0 {
			s += fmt.Sprintf(" ckpt=%d", x.CheckpointStep)
		}
	case c.Complete != nil:
		s = "complete " + c.Complete.Job
	case c.Fail != nil:
		s = fmt.Sprintf("fail %s reason=%q", c.Fail.Job, c.Fail.Reason)
	case c.Purge != nil:
		s = fmt.Sprintf("purge %s steps=%v", c.Purge.Job, c.Purge.Steps)
	default:
		s = c.Kind()
	}
	if c.ID != "" {
		s += " id=" + c.ID
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
