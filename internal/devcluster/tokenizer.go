package devcluster

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/loomtrain/loom/models/tokenizer"
	"github.com/loomtrain/loom/shard"
	"github.com/loomtrain/loom/shard/synth"
)

// devTokenizerPrefix is where loom dev writes the tokenizer its jobs train
// with, in the dev bucket.
const devTokenizerPrefix = "tokenizers/dev"

// devTokenizerVocab caps the dev tokenizer's vocabulary; on the synthetic
// text, training stops earlier, once every word is one token.
const devTokenizerVocab = 2048

// WriteTokenizer trains a byte-level BPE tokenizer on the text of the first
// n synthetic samples of each kind (the samples WriteSynth wrote: the same
// seed and options) and writes it as a Hugging Face tokenizer
// (tokenizer.HFFiles) under s3://loom/tokenizers/dev, as a project brings
// its pretrained LLM's tokenizer. It returns that location, for a
// manifest's model.tokenizer.
func (c *Cluster) WriteTokenizer(ctx context.Context, kinds []shard.Kind, n int) (string, *tokenizer.BPE, error) {
	corpus := tokenizer.NewCorpus(tokenizer.DefaultSpecial)
	for _, k := range kinds {
		if k == shard.KindTokens {
			continue
		}
		for i := 0; i < n; i++ {
			corpus.Add([]byte(sampleText(synth.SampleWith(k, 7, i, synth.Options{SceneText: true}))))
		}
	}
	tok, err := tokenizer.Train(tokenizer.TrainConfig{VocabSize: devTokenizerVocab}, corpus)
	if err != nil {
		return "", nil, fmt.Errorf("training the dev tokenizer: %w", err)
	}
	files, err := tokenizer.HFFiles(tok)
	if err != nil {
		return "", nil, fmt.Errorf("writing the dev tokenizer: %w", err)
	}
	for _, f := range files {
		key := shard.JoinKey(devTokenizerPrefix, f.Name)
		if err := c.store.Put(ctx, key, bytes.NewReader(f.Data), int64(len(f.Data))); err != nil {
			return "", nil, fmt.Errorf("writing the dev tokenizer: %s: %w", key, err)
		}
	}
	return "s3://" + Bucket + "/" + devTokenizerPrefix, tok, nil
}

// sampleText is the text of a sample that a tokenizer should learn from:
// its caption, text, interleaved text and conversation turns.
func sampleText(s shard.Sample) string {
	parts := []string{s.Caption, s.Text}
	for _, it := range s.Items {
		parts = append(parts, it.Text)
	}
	for _, t := range s.Turns {
		parts = append(parts, t.Text)
	}
	return strings.Join(parts, "\n")
}
