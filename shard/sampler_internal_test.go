package shard

import (
	"testing"
)

func TestOrderMatchesNaive(t *testing.T) {
	cases := []struct {
		rows   []int64
		window int64
	}{
		{[]int64{5}, 0},
		{[]int64{3, 7, 2, 9}, 4},
		{[]int64{10, 10, 10}, 7},
		{[]int64{1, 1, 1, 1, 1}, 2},
		{[]int64{100, 37, 64, 1, 250}, 50},
		{[]int64{100, 37, 64, 1, 250}, 1000},
	}
	for _, c := range cases {
		o, err := NewOrder(c.rows, 42, c.window)
		if err != nil {
			t.Fatal(err)
		}
		for epoch := int64(0); epoch < 3; epoch++ {
			want := o.naiveEpoch(epoch)
			for pos := int64(0); pos < o.Len(); pos++ {
				if got := o.At(epoch, pos); got != want[pos] {
					t.Fatalf("NewOrder(%v, 42, %d).At(%d, %d) = %v, want %v (naive)", c.rows, c.window, epoch, pos, got, want[pos])
				}
			}
		}
	}
}

func TestOrderIsPermutationWithinWindow(t *testing.T) {
	rows := []int64{40, 13, 77, 5, 60}
	o, _ := NewOrder(rows, 7, 25)
	e0 := o.naiveEpoch(0)
	e1 := o.naiveEpoch(1)
	seen := map[Loc]bool{}
	for _, l := range e0 {
		if seen[l] || l.Row >= rows[l.Shard] {
			t.Fatalf("epoch 0 repeats or invents %v", l)
		}
		seen[l] = true
	}
	if int64(len(seen)) != o.Len() {
		t.Fatalf("epoch 0 covers %d samples, want %d", len(seen), o.Len())
	}
	same := 0
	for i := range e0 {
		if e0[i] == e1[i] {
			same++
		}
	}
	if same > len(e0)/4 {
		t.Errorf("epochs 0 and 1 agree at %d of %d positions; want a different shuffle", same, len(e0))
	}
	// Shuffling stays within a window: with shards of 100 rows and a
	// window of 50 aligned to them, each window reads a single shard.
	o2, _ := NewOrder([]int64{100, 100, 100, 100}, 3, 50)
	for pos := int64(0); pos < 400; pos += 50 {
		shards := map[int]bool{}
		for p := pos; p < pos+50; p++ {
			shards[o2.At(0, p).Shard] = true
		}
		if len(shards) != 1 {
			t.Errorf("window at %d with shards of 100 rows and window 50 reads %d shards, want 1", pos, len(shards))
		}
	}
}

func TestMixtureMatchesNaive(t *testing.T) {
	m, err := NewMixture([]float64{0.84, 0.16}, 9, 100)
	if err != nil {
		t.Fatal(err)
	}
	if c := m.Counts(); c[0] != 84 || c[1] != 16 {
		t.Fatalf("Counts() = %v, want [84 16]", c)
	}
	for _, g := range []int64{0, 1, 50, 99, 100, 101, 250, 999} {
		s, k := m.At(g)
		ns, nk := m.naiveAt(g)
		if s != ns || k != nk {
			t.Errorf("At(%d) = (%d, %d), naive replay gives (%d, %d)", g, s, k, ns, nk)
		}
	}
	got := [2]int{}
	for g := int64(0); g < 1000; g++ {
		s, _ := m.At(g)
		got[s]++
	}
	if got[0] != 840 || got[1] != 160 {
		t.Errorf("1000 positions drew %v, want [840 160]", got)
	}
	m3, _ := NewMixture([]float64{1, 1, 1}, 1, 10)
	if c := m3.Counts(); c[0]+c[1]+c[2] != 10 {
		t.Errorf("Counts() = %v, want a sum of 10", c)
	}
}

func TestLRUMatchesNaive(t *testing.T) {
	// The reference: a slice in recency order, evicting from the end.
	type ent struct {
		k    int
		cost int64
	}
	c := newLRU[int, int](100)
	var ref []ent
	refAdd := func(k int, cost int64) {
		for i, e := range ref {
			if e.k == k {
				ref = append(ref[:i], ref[i+1:]...)
				break
			}
		}
		if cost > 100 {
			return
		}
		ref = append([]ent{{k, cost}}, ref...)
		var used int64
		for _, e := range ref {
			used += e.cost
		}
		for used > 100 {
			used -= ref[len(ref)-1].cost
			ref = ref[:len(ref)-1]
		}
	}
	refGet := func(k int) bool {
		for i, e := range ref {
			if e.k == k {
				ref = append(ref[:i], ref[i+1:]...)
				ref = append([]ent{e}, ref...)
				return true
			}
		}
		return false
	}
	seed := uint64(1)
	next := func(n int) int { seed = seed*6364136223846793005 + 1442695040888963407; return int(seed>>33) % n }
	for step := 0; step < 5000; step++ {
		k := next(20)
		if next(2) == 0 {
			cost := int64(next(60))
			c.add(k, k, cost)
			refAdd(k, cost)
		} else {
			_, ok := c.get(k)
			if want := refGet(k); ok != want {
				t.Fatalf("step %d: get(%d) = %v, reference %v", step, k, ok, want)
			}
		}
		if c.len() != len(ref) || c.used > c.limit {
			t.Fatalf("step %d: %d entries using %d, reference %d entries", step, c.len(), c.used, len(ref))
		}
	}
}
