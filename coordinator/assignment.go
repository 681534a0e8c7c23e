package coordinator

// Peer is one rank of a generation.
type Peer struct {
	Rank     int    `json:"rank"`
	WorkerID string `json:"worker_id"`
	Addr     string `json:"addr"`
}

// Assignment is what a worker is told to do. Idle is true when it has no job.
type Assignment struct {
	Idle       bool
	Job        string
	Stage      int
	Generation int64
	Rank       int
	Peers      []Peer
	Restore    *Checkpoint
	DataCursor int64
	StartStep  int64
	StopStep   int64
}

// Assignment returns the worker's current assignment. A worker of a job
// whose generation is broken still gets it; the new generation replaces it.
func (s *State) Assignment(workerID string) Assignment {
	w := s.Workers[workerID]
	if w == nil || w.Job == "" {
		return Assignment{Idle: true}
	}
	j := s.Jobs[w.Job]
	if j == nil || j.State != Running {
		return Assignment{Idle: true}
	}
	a := Assignment{Job: j.Name, Stage: j.Stage, Generation: j.Generation, Rank: -1,
		StopStep: j.Manifest.StageEnd(j.Stage)}
	for i, id := range j.Workers {
		p := Peer{Rank: i, WorkerID: id}
		if pw := s.Workers[id]; pw != nil {
			p.Addr = pw.Addr
		}
		if id == workerID {
			a.Rank = i
		}
		a.Peers = append(a.Peers, p)
	}
	if j.Restore != nil {
		r := *j.Restore
		a.Restore = &r
		a.DataCursor = r.Samples
		a.StartStep = r.Step
	}
	return a
}
