package tokenizer

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"time"
)

// SyntheticText returns deterministic English-like text of about n words:
// words drawn from a Zipf distribution over a generated vocabulary, so that
// pair statistics look like natural text's.
func SyntheticText(seed uint64, n int) string {
	rng := rand.New(rand.NewPCG(seed, 11))
	const letters = "etaoinshrdlcumwfgypbvkjxqz"
	vocab := make([]string, 5000)
	for i := range vocab {
		l := 2 + rng.IntN(8)
		var b strings.Builder
		for j := 0; j < l; j++ {
			// Skewed letter frequencies.
			b.WriteByte(letters[min(int(rng.ExpFloat64()*5), len(letters)-1)])
		}
		vocab[i] = b.String()
	}
	z := rand.NewZipf(rand.New(rand.NewPCG(seed, 12)), 1.1, 1, uint64(len(vocab)-1))
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			if i%12 == 0 {
				b.WriteString(".\n")
			} else {
				b.WriteByte(' ')
			}
		}
		b.WriteString(vocab[z.Uint64()])
	}
	return b.String()
}

// BenchResult is one run of BenchTrain.
type BenchResult struct {
	Words        int     `json:"words"`
	Bytes        int     `json:"bytes"`
	Merges       int     `json:"merges"`
	FastSec      float64 `json:"train_seconds"`
	ReferenceSec float64 `json:"reference_seconds"`
	Speedup      float64 `json:"speedup"`
}

// BenchTrain times Train against TrainReference on SyntheticText(seed,
// words) for the given number of merges, checks that both learn the same
// merges, and reports the times measured with now.
func BenchTrain(seed uint64, words, merges int, now func() time.Time) (BenchResult, error) {
	text := SyntheticText(seed, words)
	cfg := TrainConfig{VocabSize: 256 + len(DefaultSpecial) + merges}
	corpus := func() *Corpus {
		c := NewCorpus(DefaultSpecial)
		c.Add([]byte(text))
		return c
	}
	c1, c2 := corpus(), corpus()
	t0 := now()
	fast, err := Train(cfg, c1)
	if err != nil {
		return BenchResult{}, err
	}
	t1 := now()
	ref, err := TrainReference(cfg, c2)
	if err != nil {
		return BenchResult{}, err
	}
	t2 := now()
	if !reflect.DeepEqual(fast.Merges(), ref.Merges()) {
		return BenchResult{}, fmt.Errorf("Train and TrainReference learned different merges")
	}
	r := BenchResult{Words: words, Bytes: len(text), Merges: len(fast.Merges()),
		FastSec: t1.Sub(t0).Seconds(), ReferenceSec: t2.Sub(t1).Seconds()}
	if r.FastSec > 0 {
		r.Speedup = r.ReferenceSec / r.FastSec
	}
	return r, nil
}
