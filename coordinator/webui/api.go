package webui

import (
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/loomtrain/loom/coordinator"
)

// The JSON the pages read. Times are Unix milliseconds (0: none).

type clusterJSON struct {
	Node    string       `json:"node"`
	State   string       `json:"state"` // this node's Raft state
	Term    uint64       `json:"term"`
	Leader  string       `json:"leader"`
	Servers []serverJSON `json:"servers"`
	Error   string       `json:"error,omitempty"`
	Workers []workerJSON `json:"workers"`
	Applied uint64       `json:"applied"`
}

type serverJSON struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr"`
	Suffrage string `json:"suffrage"`
	Leader   bool   `json:"leader"`
	Self     bool   `json:"self"`
}

type workerJSON struct {
	ID           string  `json:"id"`
	Addr         string  `json:"addr"`
	Host         string  `json:"host"`
	GPUs         int     `json:"gpus"`
	State        string  `json:"state"` // up, down, unhealthy
	Job          string  `json:"job"`
	Rank         int     `json:"rank"` // -1: none
	LastReport   int64   `json:"last_report"`
	LastStep     int64   `json:"last_step"`
	TokensPerSec float64 `json:"tokens_per_sec"`
	Failure      string  `json:"failure,omitempty"`
	Since        int64   `json:"since"`
}

type jobJSON struct {
	Name         string                       `json:"name"`
	State        string                       `json:"state"`
	Message      string                       `json:"message"`
	Recipe       string                       `json:"recipe"`
	Model        string                       `json:"model"`
	Stage        int                          `json:"stage"`
	StageName    string                       `json:"stage_name"`
	Stages       int                          `json:"stages"`
	Step         int64                        `json:"step"`
	TotalSteps   int64                        `json:"total_steps"`
	Samples      int64                        `json:"samples"`
	Generation   int64                        `json:"generation"`
	Restarts     int                          `json:"restarts"`
	World        int                          `json:"world"`
	Losses       map[string]coordinator.Float `json:"losses"` // "NaN" for a diverged loss
	TokensPerSec float64                      `json:"tokens_per_sec"`
	StepTime     float64                      `json:"step_time"`
	ETA          float64                      `json:"eta"` // seconds; -1: unknown
	Submitted    int64                        `json:"submitted"`
	Updated      int64                        `json:"updated"`
}

type jobDetailJSON struct {
	jobJSON
	Timeline    []stageJSON      `json:"timeline"`
	Workers     []workerJSON     `json:"workers"`
	Generations []generationJSON `json:"generations"`
	Events      []eventJSON      `json:"events"`
	Checkpoints []checkpointJSON `json:"checkpoints"`
	// Corrupt are checkpoints set aside as corrupt (Reason says why).
	Corrupt    []checkpointJSON `json:"corrupt"`
	Series     []string         `json:"series"`
	Resolution int64            `json:"resolution"`
	Eval       []evalJSON       `json:"eval"`
	Logs       logsJSON         `json:"logs"`
}

type stageJSON struct {
	Index   int    `json:"index"`
	Name    string `json:"name"`
	Steps   int64  `json:"steps"`
	Start   int64  `json:"start"` // first global step - 1
	End     int64  `json:"end"`
	State   string `json:"state"` // done, running, waiting, pending
	Started int64  `json:"started"`
	Ended   int64  `json:"ended"`
}

type generationJSON struct {
	Generation  int64    `json:"generation"`
	Stage       int      `json:"stage"`
	StageName   string   `json:"stage_name"`
	RestoreStep int64    `json:"restore_step"`
	Started     int64    `json:"started"`
	Reason      string   `json:"reason"`
	Restart     bool     `json:"restart"`
	Peers       []string `json:"peers"`
}

type eventJSON struct {
	Seq  int64  `json:"seq"`
	Kind string `json:"kind"`
	Msg  string `json:"msg"`
	Time int64  `json:"time"`
}

type checkpointJSON struct {
	Step       int64  `json:"step"`
	Stage      int    `json:"stage"`
	Generation int64  `json:"generation"`
	Samples    int64  `json:"samples"`
	Objects    int    `json:"objects"`
	Bytes      int64  `json:"bytes"`
	Committed  int64  `json:"committed"`
	Reason     string `json:"reason,omitempty"`
}

type evalJSON struct {
	Name  string  `json:"name"`
	Step  int64   `json:"step"`
	Stage int     `json:"stage"`
	Value float64 `json:"value"`
}

type logsJSON struct {
	Available bool            `json:"available"`
	Hint      string          `json:"hint"`
	Workers   []workerLogJSON `json:"workers"`
}

type workerLogJSON struct {
	Worker string   `json:"worker"`
	Lines  []string `json:"lines"`
	Error  string   `json:"error,omitempty"`
}

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func (h *Handler) apiCluster(w http.ResponseWriter, r *http.Request) {
	out := clusterJSON{Node: h.cfg.NodeID, State: h.cfg.Raft.State(), Term: h.cfg.Raft.Term(), Servers: []serverJSON{}, Workers: []workerJSON{}}
	out.Leader, _ = h.cfg.Raft.Leader()
	servers, err := h.cfg.Raft.Configuration()
	if err != nil {
		out.Error = "raft configuration: " + err.Error()
	}
	h.cfg.FSM.Read(func(s *coordinator.State) {
		out.Applied = s.Index
		for _, sv := range servers {
			id := string(sv.ID)
			out.Servers = append(out.Servers, serverJSON{ID: id, RaftAddr: string(sv.Address), APIAddr: s.Nodes[id],
				Suffrage: strings.ToLower(sv.Suffrage.String()), Leader: id == out.Leader, Self: id == h.cfg.NodeID})
		}
		for _, wk := range s.SortedWorkers() {
			out.Workers = append(out.Workers, workerOf(s, wk))
		}
	})
	writeJSON(w, http.StatusOK, out)
}

func workerOf(s *coordinator.State, wk *coordinator.Worker) workerJSON {
	st := "up"
	switch {
	case !wk.Up:
		st = "down"
	case wk.Unhealthy:
		st = "unhealthy"
	}
	rank := -1
	if j := s.Jobs[wk.Job]; j != nil {
		for i, id := range j.Workers {
			if id == wk.ID {
				rank = i
			}
		}
	}
	return workerJSON{ID: wk.ID, Addr: wk.Addr, Host: wk.Host, GPUs: wk.GPUs, State: st, Job: wk.Job, Rank: rank,
		LastReport: ms(wk.LastReport), LastStep: wk.LastStep, TokensPerSec: wk.TokensPerSec, Failure: wk.Failure, Since: ms(wk.Since)}
}

// nonLoss are the history's series that are not loss terms.
var nonLoss = map[string]bool{"lr": true, "grad_norm": true, "tokens_per_sec": true, "step_time": true, "comm_wait": true, "data_wait": true}

// jobOf is a job's summary; its latest losses come from the metric
// history h when there is one.
func jobOf(j *coordinator.Job, h *coordinator.MetricHistory) jobJSON {
	m := &j.Manifest
	out := jobJSON{Name: j.Name, State: string(j.State), Message: j.Message, Recipe: m.Recipe, Model: m.Model.Size,
		Stage: j.Stage, Stages: len(m.Stages), Step: j.Step, TotalSteps: m.TotalSteps(), Samples: j.Samples,
		Generation: j.Generation, Restarts: j.Restarts, World: len(j.Workers), Losses: map[string]coordinator.Float{},
		TokensPerSec: j.TokensPerSec, StepTime: j.StepTime.Seconds(), ETA: -1, Submitted: ms(j.Submitted), Updated: ms(j.Updated)}
	if j.Stage < len(m.Stages) {
		out.StageName = m.Stages[j.Stage].Name
	}
	for k, v := range j.Losses {
		out.Losses[k] = v
	}
	if h != nil && len(h.Rows) > 0 {
		// The history's last step is the newest loss of the current stage.
		out.Losses = map[string]coordinator.Float{}
		last := h.Rows[len(h.Rows)-1]
		for i, n := range h.Names {
			if last.Has&(1<<uint(i)) != 0 && !nonLoss[n] && !strings.HasPrefix(n, "eval/") {
				out.Losses[n] = last.V[i]
			}
		}
	}
	if j.State == coordinator.Running && j.StepTime > 0 {
		out.ETA = float64(out.TotalSteps-j.Step) * j.StepTime.Seconds()
	}
	return out
}

func (h *Handler) apiJobs(w http.ResponseWriter, r *http.Request) {
	out := []jobJSON{}
	h.cfg.FSM.Read(func(s *coordinator.State) {
		for _, j := range s.SortedJobs() {
			out = append(out, jobOf(j, s.Metrics[j.Name]))
		}
	})
	writeJSON(w, http.StatusOK, out)
}

// maxLogLines is how many lines of each worker's log the job page shows.
const maxLogLines = 40

func (h *Handler) apiJob(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("job")
	var out *jobDetailJSON
	h.cfg.FSM.Read(func(s *coordinator.State) {
		j := s.Jobs[name]
		if j == nil {
			return
		}
		out = jobDetail(s, j)
	})
	if out == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no job named " + strconv.Quote(name)})
		return
	}
	ids := make([]string, 0, len(out.Workers))
	for _, wk := range out.Workers {
		ids = append(ids, wk.ID)
	}
	if len(ids) == 0 && len(out.Generations) > 0 { // not running: the last generation's ranks
		ids = out.Generations[len(out.Generations)-1].Peers
	}
	out.Logs = h.logs(ids)
	writeJSON(w, http.StatusOK, out)
}

func jobDetail(s *coordinator.State, j *coordinator.Job) *jobDetailJSON {
	m := &j.Manifest
	out := &jobDetailJSON{jobJSON: jobOf(j, s.Metrics[j.Name]), Timeline: []stageJSON{}, Workers: []workerJSON{}, Generations: []generationJSON{},
		Events: []eventJSON{}, Checkpoints: []checkpointJSON{}, Corrupt: []checkpointJSON{}, Series: []string{}, Eval: []evalJSON{}, Resolution: 1}
	// The stage timeline: when each stage's first generation started, and
	// when the next one (or the job's end) came.
	started := map[int]int64{}
	for _, g := range j.History {
		if _, ok := started[g.Stage]; !ok {
			started[g.Stage] = ms(g.Started)
		}
	}
	var start int64
	for i, st := range m.Stages {
		sj := stageJSON{Index: i, Name: st.Name, Steps: st.Steps, Start: start, End: m.StageEnd(i), Started: started[i]}
		start = sj.End
		switch {
		case j.State == coordinator.Succeeded || i < j.Stage:
			sj.State = "done"
		case i == j.Stage && j.State == coordinator.Running:
			sj.State = "running"
		case i == j.Stage && !j.State.Terminal():
			sj.State = "waiting"
		case i == j.Stage:
			sj.State = string(j.State)
		default:
			sj.State = "pending"
		}
		out.Timeline = append(out.Timeline, sj)
	}
	for i := range out.Timeline {
		if i+1 < len(out.Timeline) && out.Timeline[i+1].Started > 0 {
			out.Timeline[i].Ended = out.Timeline[i+1].Started
		} else if i == len(out.Timeline)-1 && j.State == coordinator.Succeeded {
			out.Timeline[i].Ended = ms(j.Updated)
		}
	}
	for _, id := range j.Workers {
		if wk := s.Workers[id]; wk != nil {
			out.Workers = append(out.Workers, workerOf(s, wk))
		}
	}
	for _, g := range j.History {
		gj := generationJSON{Generation: g.Generation, Stage: g.Stage, RestoreStep: g.RestoreStep, Started: ms(g.Started),
			Reason: g.Reason, Restart: g.Restart, Peers: []string{}}
		if g.Stage < len(m.Stages) {
			gj.StageName = m.Stages[g.Stage].Name
		}
		for _, p := range g.Peers {
			gj.Peers = append(gj.Peers, p.WorkerID)
		}
		out.Generations = append(out.Generations, gj)
	}
	for _, e := range j.Events {
		out.Events = append(out.Events, eventJSON{Seq: e.Seq, Kind: e.Kind, Msg: e.Msg, Time: ms(e.Time)})
	}
	for _, c := range j.Checkpoints {
		out.Checkpoints = append(out.Checkpoints, toCheckpointJSON(&c))
	}
	for _, c := range j.Corrupt {
		cj := toCheckpointJSON(&c.Checkpoint)
		cj.Reason = c.Reason
		out.Corrupt = append(out.Corrupt, cj)
	}
	if h := s.Metrics[j.Name]; h != nil {
		out.Series = append(out.Series, h.Names...)
		sort.Strings(out.Series)
		out.Resolution = max(h.Width, 1)
		// Evaluation results: the latest point of every eval/... series.
		var evals []string
		for _, n := range out.Series {
			if strings.HasPrefix(n, "eval/") {
				evals = append(evals, n)
			}
		}
		if len(evals) > 0 {
			names, series := h.Series(coordinator.MetricQuery{Series: evals})
			for i, n := range names {
				if pts := series[i]; len(pts) > 0 {
					p := pts[len(pts)-1]
					out.Eval = append(out.Eval, evalJSON{Name: n, Step: p.Step, Stage: p.Stage, Value: p.Value})
				}
			}
		}
	}
	return out
}

var workerIDOK = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func (h *Handler) logs(ids []string) logsJSON {
	out := logsJSON{Hint: h.cfg.LogsHint, Workers: []workerLogJSON{}}
	if h.cfg.WorkerLogs == nil {
		return out
	}
	out.Available = true
	for _, id := range ids {
		wl := workerLogJSON{Worker: id, Lines: []string{}}
		if !workerIDOK.MatchString(id) {
			wl.Error = "worker ID is not a plain name; its log is not looked up"
		} else if lines, err := h.cfg.WorkerLogs(id, maxLogLines); err != nil {
			wl.Error = err.Error()
		} else {
			wl.Lines = lines
		}
		out.Workers = append(out.Workers, wl)
	}
	return out
}

// metricsJSON is a metric query's answer: each point is
// [step, value, stage, generation, unix_ms, first_step, steps].
type metricsJSON struct {
	Job        string             `json:"job"`
	Resolution int64              `json:"resolution"`
	LastStep   int64              `json:"last_step"`
	Series     []metricSeriesJSON `json:"series"`
}

type metricSeriesJSON struct {
	Name   string                 `json:"name"`
	Points [][7]coordinator.Float `json:"points"`
}

func (h *Handler) apiMetrics(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("job")
	q := coordinator.MetricQuery{}
	v := r.URL.Query()
	if s := v.Get("series"); s != "" {
		q.Series = strings.Split(s, ",")
		if len(q.Series) > coordinator.MaxMetricSeries {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "series names more than " + strconv.Itoa(coordinator.MaxMetricSeries) + " series"})
			return
		}
	}
	for _, f := range []struct {
		key string
		dst *int64
	}{{"from", &q.From}, {"to", &q.To}} {
		if s := v.Get(f.key); s != "" {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n < 0 {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": f.key + " must be a step number, not " + strconv.Quote(s)})
				return
			}
			*f.dst = n
		}
	}
	if s := v.Get("max_points"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > coordinator.MaxMetricPoints {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "max_points must be in [0, " + strconv.Itoa(coordinator.MaxMetricPoints) + "], not " + strconv.Quote(s)})
			return
		}
		q.MaxPoints = n
	}
	if s := v.Get("stage"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "stage must be a stage index, not " + strconv.Quote(s)})
			return
		}
		q.Stage = &n
	}
	out := metricsJSON{Job: name, Resolution: 1, Series: []metricSeriesJSON{}}
	found := false
	h.cfg.FSM.Read(func(s *coordinator.State) {
		if s.Jobs[name] == nil {
			return
		}
		found = true
		hist := s.Metrics[name]
		out.LastStep = hist.Last()
		if hist != nil {
			out.Resolution = max(hist.Width, 1)
		}
		names, series := hist.Series(q)
		for i, n := range names {
			ms := metricSeriesJSON{Name: n, Points: make([][7]coordinator.Float, 0, len(series[i]))}
			for _, p := range series[i] {
				ms.Points = append(ms.Points, [7]coordinator.Float{coordinator.Float(p.Step), coordinator.Float(p.Value),
					coordinator.Float(p.Stage), coordinator.Float(p.Gen), coordinator.Float(p.UnixMs), coordinator.Float(p.First), coordinator.Float(p.N)})
			}
			out.Series = append(out.Series, ms)
		}
	})
	if !found {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no job named " + strconv.Quote(name)})
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func toCheckpointJSON(c *coordinator.Checkpoint) checkpointJSON {
	cj := checkpointJSON{Step: c.Step, Stage: c.Stage, Generation: c.Generation, Samples: c.Samples, Objects: len(c.Objects), Committed: ms(c.Committed)}
	for _, o := range c.Objects {
		cj.Bytes += o.Size
	}
	return cj
}
