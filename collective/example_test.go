package collective_test

import (
	"context"
	"fmt"
	"sync"

	"github.com/loomtrain/loom/collective"
	"github.com/loomtrain/loom/collective/inproc"
)

// Three ranks (goroutines here, processes in a job) sum their gradients.
func ExampleComm_AllReduce() {
	const world = 3
	net := inproc.NewNetwork(world, 1)
	results := make([][]float32, world)
	var wg sync.WaitGroup
	for r := range world {
		wg.Go(func() {
			comm, err := collective.New(net.Transport(r), collective.Config{Job: "example", Generation: 1})
			if err != nil {
				panic(err)
			}
			defer comm.Close()
			grad := []float32{float32(r), 1, 10 * float32(r)}
			if err := comm.AllReduce(context.Background(), grad, collective.Sum); err != nil {
				panic(err)
			}
			results[r] = grad
		})
	}
	wg.Wait()
	fmt.Println(results[0], results[2])
	// Output: [3 3 30] [3 3 30]
}
