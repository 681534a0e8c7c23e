package coordinator_test

import (
	"fmt"
	"time"

	"github.com/loomtrain/loom/api"
	"github.com/loomtrain/loom/coordinator"
)

// The state machine and the scheduler are pure: feed commands, ask Plan
// what to do next, apply its commands.
func ExamplePlan() {
	s := coordinator.NewState()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, id := range []string{"w1", "w2"} {
		s.Apply(&coordinator.Command{Time: now, WorkerUp: &coordinator.WorkerUp{Worker: coordinator.WorkerInfo{ID: id, Addr: id + ":7000"}}})
	}
	m, _ := api.ParseManifest("job.yaml", []byte(`name: demo
recipe: vila
model: {size: tiny}
datasets: [{name: d, uri: "s3://bkt/d"}]
global_batch: 4
elastic: {min: 1, max: 2}
stages: [{name: align, steps: 10}]
`))
	s.Apply(&coordinator.Command{ID: "submit-1", Time: now, Submit: &coordinator.Submit{Manifest: *m}})
	for _, c := range coordinator.Plan(s, now).Commands {
		fmt.Println(c.Kind(), c.Schedule.Job, c.Schedule.Workers, s.Apply(c).Code)
	}
	a := s.Assignment("w2")
	fmt.Println(a.Job, "generation", a.Generation, "rank", a.Rank, "of", len(a.Peers), "stop at step", a.StopStep)
	// A retried submit is recognised and not applied again.
	fmt.Println(s.Apply(&coordinator.Command{ID: "submit-1", Time: now, Submit: &coordinator.Submit{Manifest: *m}}).Dup)
	// Output:
	// schedule demo [w1 w2] ok
	// demo generation 1 rank 1 of 2 stop at step 10
	// true
}
