package shard_test

import (
	"context"
	"io"
	"testing"

	"github.com/loomtrain/loom/shard"
)

// TestMixStreamRanksCoverTheGlobalOrder reads an 84/16 mixture of an
// image-text and a text dataset with 3 ranks and checks that, batch by
// batch, the ranks together read exactly the global order.
func TestMixStreamRanksCoverTheGlobalOrder(t *testing.T) {
	ctx := context.Background()
	store := shard.NewMemStore()
	ixA := writeSynth(t, store, "a", shard.KindImageText, 60, shard.WriterOptions{BatchBytes: 4 << 10, ShardBytes: 16 << 10})
	ixB := writeSynth(t, store, "b", shard.KindText, 25, shard.WriterOptions{BatchBytes: 2 << 10, ShardBytes: 8 << 10})
	oa, _ := shard.NewOrder(ixA.ShardRows(), 1, 20)
	ob, _ := shard.NewOrder(ixB.ShardRows(), 2, 0)
	mix, _ := shard.NewMixture([]float64{84, 16}, 3, 100)
	s := shard.MixedSampler{Mix: mix, Orders: []*shard.Order{oa, ob}, Batch: 10}
	ra := shard.NewReader(store, "a", ixA, shard.ReaderOptions{})
	rb := shard.NewReader(store, "b", ixB, shard.ReaderOptions{})
	defer ra.Close()
	defer rb.Close()
	const batches, world = 12, 3
	got := make([][]string, world)
	for r := 0; r < world; r++ {
		_, n := shard.RankSlice(s.Batch, r, world)
		st, err := s.Stream(ctx, []*shard.Reader{ra, rb}, shard.RankPositions(s.Batch, r, world, 0), int64(batches*n), 32)
		if err != nil {
			t.Fatal(err)
		}
		for {
			smp, _, err := st.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got[r] = append(got[r], smp.ID)
		}
	}
	var joined []string
	for k := 0; k < batches; k++ {
		for r := 0; r < world; r++ {
			_, n := shard.RankSlice(s.Batch, r, world)
			joined = append(joined, got[r][k*n:(k+1)*n]...)
		}
	}
	readers := []*shard.Reader{ra, rb}
	for g, id := range joined {
		l := s.Global(int64(g))
		want, err := readers[l.Source].Get(ctx, l.Shard, l.Row)
		if err != nil {
			t.Fatal(err)
		}
		if id != want.ID {
			t.Fatalf("global position %d: ranks read %s, the global order has %s", g, id, want.ID)
		}
	}
}
