package coordinator

import (
	"github.com/loomtrain/loom/api/loompb"
)

func checkpointProto(c *Checkpoint) *loompb.Checkpoint {
	if c == nil {
		return nil
	}
	pc := &loompb.Checkpoint{Step: c.Step, Stage: int32(c.Stage), Generation: c.Generation, SamplesConsumed: c.Samples,
		CommittedUnixMs: c.Committed.UnixMilli()}
	for _, o := range c.Objects {
		pc.Objects = append(pc.Objects, &loompb.CheckpointObject{Path: o.Path, Sha256: o.SHA256, Size: o.Size})
	}
	return pc
}

func jobProto(st *State, j *Job) *loompb.Job {
	m := &j.Manifest
	pj := &loompb.Job{
		Name: j.Name, State: string(j.State), Recipe: m.Recipe, Stage: int32(j.Stage), Stages: int32(len(m.Stages)),
		Generation: j.Generation, Step: j.Step, TotalSteps: m.TotalSteps(), SamplesConsumed: j.Samples,
		TokensPerSec: j.TokensPerSec, StepTimeSeconds: j.StepTime.Seconds(), World: int32(len(j.Workers)),
		Workers: append([]string(nil), j.Workers...), Restarts: int32(j.Restarts), Message: j.Message,
		SubmittedUnixMs: j.Submitted.UnixMilli(), UpdatedUnixMs: j.Updated.UnixMilli(),
	}
	if j.Stage < len(m.Stages) {
		pj.StageName = m.Stages[j.Stage].Name
	}
	if len(j.Losses) > 0 {
		pj.Losses = make(map[string]float64, len(j.Losses))
		for k, v := range j.Losses {
			pj.Losses[k] = float64(v)
		}
	}
	for i := range j.Checkpoints {
		pj.Checkpoints = append(pj.Checkpoints, checkpointProto(&j.Checkpoints[i]))
	}
	for i := range j.Corrupt {
		pc := checkpointProto(&j.Corrupt[i].Checkpoint)
		pc.Corrupt = j.Corrupt[i].Reason
		pj.CorruptCheckpoints = append(pj.CorruptCheckpoints, pc)
	}
	for _, h := range j.History {
		g := &loompb.Generation{Generation: h.Generation, Stage: int32(h.Stage), RestoreStep: h.RestoreStep,
			StartedUnixMs: h.Started.UnixMilli(), Reason: h.Reason, Restart: h.Restart}
		for _, p := range h.Peers {
			g.Peers = append(g.Peers, &loompb.Peer{Rank: int32(p.Rank), WorkerId: p.WorkerID, Addr: p.Addr})
		}
		pj.History = append(pj.History, g)
	}
	if b, err := m.Normalized(); err == nil {
		pj.ManifestYaml = b
	}
	return pj
}

func assignmentProto(st *State, workerID string) *loompb.Assignment {
	a := st.Assignment(workerID)
	if a.Idle {
		return &loompb.Assignment{Idle: true}
	}
	j := st.Jobs[a.Job]
	pa := &loompb.Assignment{Job: a.Job, Stage: int32(a.Stage), StageName: j.Manifest.Stages[a.Stage].Name,
		Generation: a.Generation, Rank: int32(a.Rank), World: int32(len(a.Peers)), Restore: checkpointProto(a.Restore),
		DataCursor: a.DataCursor, StartStep: a.StartStep, StopStep: a.StopStep}
	for _, p := range a.Peers {
		pa.Peers = append(pa.Peers, &loompb.Peer{Rank: int32(p.Rank), WorkerId: p.WorkerID, Addr: p.Addr})
	}
	if b, err := j.Manifest.Normalized(); err == nil {
		pa.ManifestYaml = b
	}
	return pa
}
