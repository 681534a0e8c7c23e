package tokenizer

import (
	"container/heap"
	"fmt"
	"sort"
)

// Corpus accumulates pre-token counts from training text. Special-token
// strings in the text are cut out and never merged with their neighbours.
// The zero value is not usable; call NewCorpus.
type Corpus struct {
	special []string
	counts  map[string]int
}

// NewCorpus returns an empty corpus that cuts out the given special tokens.
func NewCorpus(special []string) *Corpus {
	return &Corpus{special: special, counts: map[string]int{}}
}

// Add counts the pre-tokens of text.
func (c *Corpus) Add(text []byte) {
	s := string(text)
	for len(s) > 0 {
		at, sp := findSpecial(s, c.special)
		for _, w := range pretokenize([]byte(s[:at])) {
			c.counts[string(w)]++
		}
		if sp == "" {
			return
		}
		s = s[at+len(sp):]
	}
}

// Words returns the number of distinct pre-tokens seen.
func (c *Corpus) Words() int { return len(c.counts) }

// TrainConfig controls Train.
type TrainConfig struct {
	// VocabSize is the wanted number of ids: 256 bytes + merges + special
	// tokens. Training stops earlier when no pair occurs MinFrequency times.
	VocabSize int
	// Special tokens appended after the merges; nil means DefaultSpecial.
	Special []string
	// MinFrequency is the least count a pair needs to be merged (default 2).
	MinFrequency int
}

func (cfg TrainConfig) withDefaults() TrainConfig {
	if cfg.Special == nil {
		cfg.Special = DefaultSpecial
	}
	if cfg.MinFrequency <= 0 {
		cfg.MinFrequency = 2
	}
	return cfg
}

func (cfg TrainConfig) numMerges() (int, error) {
	n := cfg.VocabSize - 256 - len(cfg.Special)
	if n < 0 {
		return 0, fmt.Errorf("vocab size %d is below 256 bytes + %d special tokens", cfg.VocabSize, len(cfg.Special))
	}
	return n, nil
}

// word is one distinct pre-token during training.
type word struct {
	ids   []int
	count int
}

// sortedWords returns the corpus's words in a fixed order, so that training
// does not depend on map iteration order.
func (c *Corpus) sortedWords() []word {
	keys := make([]string, 0, len(c.counts))
	for k := range c.counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	ws := make([]word, len(keys))
	for i, k := range keys {
		ids := make([]int, len(k))
		for j := 0; j < len(k); j++ {
			ids[j] = int(k[j])
		}
		ws[i] = word{ids: ids, count: c.counts[k]}
	}
	return ws
}

// better reports whether pair p with count n wins over q with count m: the
// higher count wins, ties go to the smaller pair.
func better(p [2]int, n int, q [2]int, m int) bool {
	if n != m {
		return n > m
	}
	if p[0] != q[0] {
		return p[0] < q[0]
	}
	return p[1] < q[1]
}

// Train learns BPE merges from the corpus. It keeps incremental pair counts
// and a lazy max-heap, so each merge touches only the words that contain the
// merged pair; TrainReference is the reference it is tested against.
func Train(cfg TrainConfig, c *Corpus) (*BPE, error) {
	cfg = cfg.withDefaults()
	n, err := cfg.numMerges()
	if err != nil {
		return nil, err
	}
	ws := c.sortedWords()
	counts := map[[2]int]int{}
	where := map[[2]int]map[int]struct{}{}
	for wi, w := range ws {
		for i := 0; i+1 < len(w.ids); i++ {
			p := [2]int{w.ids[i], w.ids[i+1]}
			counts[p] += w.count
			if where[p] == nil {
				where[p] = map[int]struct{}{}
			}
			where[p][wi] = struct{}{}
		}
	}
	h := &pairHeap{}
	for p, k := range counts {
		*h = append(*h, pairCount{p, k})
	}
	heap.Init(h)
	merges := make([][2]int, 0, n)
	for len(merges) < n {
		var best pairCount
		found := false
		for h.Len() > 0 {
			e := heap.Pop(h).(pairCount)
			if counts[e.pair] == e.count && e.count > 0 {
				best, found = e, true
				break
			}
		}
		if !found || best.count < cfg.MinFrequency {
			break
		}
		id := 256 + len(merges)
		merges = append(merges, best.pair)
		changed := map[[2]int]struct{}{}
		users := make([]int, 0, len(where[best.pair]))
		for wi := range where[best.pair] {
			users = append(users, wi)
		}
		sort.Ints(users)
		for _, wi := range users {
			w := &ws[wi]
			for i := 0; i+1 < len(w.ids); i++ {
				p := [2]int{w.ids[i], w.ids[i+1]}
				counts[p] -= w.count
				changed[p] = struct{}{}
				delete(where[p], wi)
			}
			w.ids = mergePair(w.ids, best.pair, id)
			for i := 0; i+1 < len(w.ids); i++ {
				p := [2]int{w.ids[i], w.ids[i+1]}
				counts[p] += w.count
				changed[p] = struct{}{}
				if where[p] == nil {
					where[p] = map[int]struct{}{}
				}
				where[p][wi] = struct{}{}
			}
		}
		for p := range changed {
			if counts[p] > 0 {
				heap.Push(h, pairCount{p, counts[p]})
			} else {
				delete(counts, p)
				delete(where, p)
			}
		}
	}
	return NewBPE(merges, cfg.Special)
}

// TrainReference is the naive reference trainer Train is tested against:
// it recounts every pair of every word before each merge. It gives the same
// merges as Train, more slowly.
func TrainReference(cfg TrainConfig, c *Corpus) (*BPE, error) {
	cfg = cfg.withDefaults()
	n, err := cfg.numMerges()
	if err != nil {
		return nil, err
	}
	ws := c.sortedWords()
	var merges [][2]int
	for len(merges) < n {
		counts := map[[2]int]int{}
		for _, w := range ws {
			for i := 0; i+1 < len(w.ids); i++ {
				counts[[2]int{w.ids[i], w.ids[i+1]}] += w.count
			}
		}
		var best [2]int
		bestN := 0
		for p, k := range counts {
			if bestN == 0 || better(p, k, best, bestN) {
				best, bestN = p, k
			}
		}
		if bestN < cfg.MinFrequency {
			break
		}
		id := 256 + len(merges)
		merges = append(merges, best)
		for i := range ws {
			ws[i].ids = mergePair(ws[i].ids, best, id)
		}
	}
	return NewBPE(merges, cfg.Special)
}

type pairCount struct {
	pair  [2]int
	count int
}

// pairHeap is a max-heap in the order of better.
type pairHeap []pairCount

func (h pairHeap) Len() int { return len(h) }
func (h pairHeap) Less(i, j int) bool {
	return better(h[i].pair, h[i].count, h[j].pair, h[j].count)
}
func (h pairHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *pairHeap) Push(x any)   { *h = append(*h, x.(pairCount)) }
func (h *pairHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
