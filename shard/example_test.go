package shard_test

import (
	"context"
	"fmt"

	"github.com/loomtrain/loom/shard"
)

// Write a small text dataset, then read a row back by (shard, row).
func Example() {
	ctx := context.Background()
	store := shard.NewMemStore() // or shard.NewS3Store(...), shard.NewFSStore(dir)
	w, err := shard.NewWriter(ctx, store, "datasets/notes", shard.WriterOptions{Kind: shard.KindText})
	if err != nil {
		panic(err)
	}
	for i, text := range []string{"first note", "second note", "third note"} {
		if err := w.Add(shard.Sample{ID: fmt.Sprint(i), Text: text}); err != nil {
			panic(err)
		}
	}
	ix, err := w.Close() // writes the shards, then index.json
	if err != nil {
		panic(err)
	}
	r, err := shard.OpenReader(ctx, store, "datasets/notes", shard.ReaderOptions{})
	if err != nil {
		panic(err)
	}
	defer r.Close()
	s, err := r.Get(ctx, 0, 1)
	if err != nil {
		panic(err)
	}
	fmt.Println(ix.Kind, ix.Rows, len(ix.Shards), s.ID, s.Text)
	// Output: text 3 1 1 second note
}

// Hand out global batches of 4 to 2 ranks, then resume at world size 3
// from the O(1) state.
func ExampleSampler() {
	order, _ := shard.NewOrder([]int64{5, 3}, 42, 4) // two shards, shuffle window 4
	s := shard.Sampler{Order: order, Batch: 4}
	st := shard.State{Seed: 42}
	for r := 0; r < 2; r++ {
		fmt.Println("rank", r, "of 2:", s.RankBatch(st, r, 2))
	}
	st = s.Next(st)
	fmt.Printf("checkpoint: %+v\n", st)
	for r := 0; r < 3; r++ {
		fmt.Println("rank", r, "of 3:", s.RankBatch(st, r, 3))
	}
	// Output:
	// rank 0 of 2: [{0 1} {0 2}]
	// rank 1 of 2: [{0 3} {0 0}]
	// checkpoint: {Seed:42 Epoch:0 Consumed:4}
	// rank 0 of 3: [{1 0} {0 4}]
	// rank 1 of 3: [{1 2}]
	// rank 2 of 3: [{1 1}]
}

// Pack three samples into sequences of 6 tokens; loss weights make each
// sample count once, whatever its length.
func ExamplePack() {
	packed, _ := shard.Pack([]shard.PackInput{
		{Tokens: []int32{11, 12, 13, 14}},
		{Tokens: []int32{21, 22}, Loss: []bool{false, true}},
		{Tokens: []int32{31, 32, 33}},
	}, 6, 0)
	for _, p := range packed {
		fmt.Println(p.Tokens, p.SegmentIDs, p.Positions, p.LossWeights, p.Segments)
	}
	// Output:
	// [11 12 13 14 21 22] [1 1 1 1 2 2] [0 1 2 3 0 1] [0.25 0.25 0.25 0.25 0 1] 2
	// [31 32 33 0 0 0] [1 1 1 0 0 0] [0 1 2 0 0 0] [0.33333334 0.33333334 0.33333334 0 0 0] 1
}

// Read one epoch in the sampler's shuffled order with Stream, which keeps
// up to AheadBytes of batches fetched ahead of the loop; with a window
// that holds every shard, each is fetched with one GET of the whole object.
func ExampleReader_Stream() {
	ctx := context.Background()
	store := shard.NewMemStore()
	w, err := shard.NewWriter(ctx, store, "ds", shard.WriterOptions{Kind: shard.KindText, BatchBytes: 64, ShardBytes: 256})
	if err != nil {
		panic(err)
	}
	for i := 0; i < 12; i++ {
		if err := w.Add(shard.Sample{ID: fmt.Sprint(i), Text: fmt.Sprintf("note number %d", i)}); err != nil {
			panic(err)
		}
	}
	ix, err := w.Close()
	if err != nil {
		panic(err)
	}
	order, _ := shard.NewOrder(ix.ShardRows(), 7, 4)
	r := shard.NewReader(store, "ds", ix, shard.ReaderOptions{AheadBytes: 1 << 20})
	st := r.Stream(ctx, func(i int64) (shard.Loc, bool) {
		if i >= order.Len() {
			return shard.Loc{}, false
		}
		return order.At(0, i), true
	}, 0)
	n := 0
	for {
		_, _, err := st.Next()
		if err != nil {
			break // io.EOF at the end of the epoch
		}
		n++
	}
	r.Close()
	gets, _ := r.Stats()
	fmt.Println(n, "samples from", len(ix.Shards), "shards with", gets, "GETs")
	// Output: 12 samples from 4 shards with 4 GETs
}
