package worker_test

import (
	"fmt"

	"github.com/loomtrain/loom/api/loompb"
	"github.com/loomtrain/loom/worker"
)

// The agent's decisions are pure: what a new assignment does to the
// generation it runs, and what follows a step.
func Example() {
	cur := worker.Current{Job: "blip2", Generation: 3}
	fmt.Println(worker.Decide(cur, &loompb.Assignment{Job: "blip2", Generation: 3}))
	fmt.Println(worker.Decide(cur, &loompb.Assignment{Job: "blip2", Generation: 4}))
	fmt.Println(worker.Decide(cur, &loompb.Assignment{Idle: true}))

	// Checkpoint interval 500, stage ends at step 2000.
	fmt.Println(worker.PlanStep(1000, 2000, 500, false))
	fmt.Println(worker.PlanStep(1001, 2000, 500, true)) // a rank got SIGTERM
	fmt.Println(worker.PlanStep(2000, 2000, 500, false))
	// Output:
	// keep
	// replace
	// stop
	// checkpoint
	// drain
	// finish
}
