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

// The zigzag layout gives rank r chunks r and 2n−1−r of the sequence; these
// are the global positions to apply RoPE at.
func ExampleLayout_Positions() {
	for r := range 2 {
		fmt.Println(r, collective.Zigzag.Positions(8, 2, r))
	}
	// Output:
	// 0 [0 1 6 7]
	// 1 [2 3 4 5]
}

// A trainer packs gradients into buckets in the order backward produces
// them and marks each ready as soon as it is complete; the all-reduce of
// bucket 0 runs while backward fills bucket 1.
func ExampleBucketer() {
	const world = 2
	net := inproc.NewNetwork(world, 1)
	var wg sync.WaitGroup
	out := make([]string, world)
	for r := range world {
		wg.Go(func() {
			comm, _ := collective.New(net.Transport(r), collective.Config{Job: "example"})
			defer comm.Close()
			b := collective.NewBucketer(comm, collective.Mean, 2, 3) // two buckets: 2 and 3 floats
			ctx := context.Background()
			// backward: the last layer's gradients first
			copy(b.Bucket(0), []float32{float32(r), 1})
			b.Ready(ctx, 0)
			copy(b.Bucket(1), []float32{2, float32(2 * r), 4})
			b.Ready(ctx, 1)
			if err := b.Wait(); err != nil {
				panic(err)
			}
			out[r] = fmt.Sprint(b.Bucket(0), b.Bucket(1))
		})
	}
	wg.Wait()
	fmt.Println(out[0])
	fmt.Println(out[1])
	// Output:
	// [0.5 1] [2 1 4]
	// [0.5 1] [2 1 4]
}
