package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/loomtrain/loom/models/tokenizer"
	"github.com/spf13/cobra"
)

func newTokenizerCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "tokenizer",
		Short: "Train a byte-level BPE tokenizer on text files, and encode or decode with it",
		Long: `The models' text tokenizer is a byte-level BPE (models/tokenizer): ids 0-255
are bytes, then the learned merges, then the special tokens <pad> <bos> <eos>
<image> <img> </img> <vision> </vision> <eof> <eov> [DEC]. It is stored as a
small JSON file that training stages and the demo load.

Example:
  loom tokenizer train --input captions.txt --vocab-size 4096 --out tokenizer.json
  loom tokenizer encode --tokenizer tokenizer.json "<image> a photo of a cat"
  loom tokenizer decode --tokenizer tokenizer.json 259 312 97`,
	}
	c.AddCommand(newTokenizerTrainCmd(), newTokenizerEncodeCmd(), newTokenizerDecodeCmd())
	return c
}

func newTokenizerTrainCmd() *cobra.Command {
	var (
		inputs  []string
		vocab   int
		out     string
		format  string
		minFreq int
	)
	c := &cobra.Command{
		Use:   "train --input FILE[,FILE...] --vocab-size N --out tokenizer.json",
		Short: "Learn BPE merges from plain-text files (deterministic for the same input)",
		Long: `Reads every input file as UTF-8 (or any bytes) text, counts its pre-tokens
and learns merges until the vocabulary (256 bytes + merges + 11 special tokens)
reaches --vocab-size, or no pair of tokens occurs --min-frequency times.
The same files in the same order always give the same tokenizer. Use "-" to
read standard input.

Example:
  loom tokenizer train --input data/captions.txt,data/books.txt --vocab-size 8000 --out tokenizer.json
  loom tokenizer train --input data/captions.txt --vocab-size 8000 --format hf --out tok/`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(inputs) == 0 {
				return fmt.Errorf("--input: name at least one text file")
			}
			if out == "" {
				return fmt.Errorf("--out: name the tokenizer file to write")
			}
			corpus := tokenizer.NewCorpus(tokenizer.DefaultSpecial)
			var total int64
			for _, in := range inputs {
				n, err := addFile(corpus, in, cmd.InOrStdin())
				if err != nil {
					return err
				}
				total += n
			}
			tok, err := tokenizer.Train(tokenizer.TrainConfig{VocabSize: vocab, MinFrequency: minFreq}, corpus)
			if err != nil {
				return fmt.Errorf("--vocab-size: %w", err)
			}
			switch format {
			case "loom":
				if err := tokenizer.Save(out, tok); err != nil {
					return err
				}
			case "hf":
				if err := writeHFTokenizer(out, tok); err != nil {
					return err
				}
			default:
				return fmt.Errorf("--format %q: want loom or hf", format)
			}
			slog.Info("tokenizer trained", "bytes", total, "distinct_pretokens", corpus.Words(),
				"merges", len(tok.Merges()), "vocab_size", tok.VocabSize(), "out", out)
			if tok.VocabSize() < vocab {
				slog.Warn("corpus ran out of repeated pairs before the requested vocabulary size",
					"requested", vocab, "got", tok.VocabSize())
			}
			return nil
		},
	}
	c.Flags().StringSliceVar(&inputs, "input", nil, "text files to learn from (comma-separated or repeated; - for stdin)")
	c.Flags().IntVar(&vocab, "vocab-size", 4096, "wanted vocabulary size, bytes and special tokens included")
	c.Flags().StringVar(&out, "out", "tokenizer.json", "where to write the tokenizer (a directory with --format hf)")
	c.Flags().StringVar(&format, "format", "loom", "loom: Loom's JSON file; hf: a directory with a Hugging Face tokenizer.json and tokenizer_config.json (what a manifest's model.tokenizer names)")
	c.Flags().IntVar(&minFreq, "min-frequency", 2, "least number of occurrences of a pair to merge it")
	return c
}

// writeHFTokenizer writes tok as a Hugging Face tokenizer into dir.
func writeHFTokenizer(dir string, tok *tokenizer.BPE) error {
	files, err := tokenizer.HFFiles(tok)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.Name), f.Data, 0o644); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
	}
	return nil
}

func addFile(c *tokenizer.Corpus, path string, stdin io.Reader) (int64, error) {
	var r io.Reader = stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return 0, fmt.Errorf("--input: %w", err)
		}
		defer f.Close()
		r = f
	}
	br := bufio.NewReaderSize(r, 1<<20)
	var n int64
	for {
		line, err := br.ReadBytes('\n')
		n += int64(len(line))
		if len(line) > 0 {
			c.Add(line)
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("--input %s: %w", path, err)
		}
	}
}

func newTokenizerEncodeCmd() *cobra.Command {
	var (
		path   string
		asJSON bool
	)
	c := &cobra.Command{
		Use:   "encode --tokenizer tokenizer.json TEXT...",
		Short: "Print the token ids of TEXT (the arguments joined by spaces)",
		Long: `Encodes the arguments, joined by single spaces, and prints the ids separated by
spaces (or a JSON object with ids and pieces with --json). Special tokens such
as <image> become one id.

Example:
  loom tokenizer encode --tokenizer tokenizer.json "<image> a photo of a cat"`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tok, err := tokenizer.Open(path)
			if err != nil {
				return err
			}
			ids := tok.Encode(strings.Join(args, " "))
			if asJSON {
				pieces := make([]string, len(ids))
				for i, id := range ids {
					if p, ok := tok.(interface{ Token(int) (string, error) }); ok {
						pieces[i], _ = p.Token(id)
					} else {
						pieces[i], _ = tok.Decode([]int{id})
					}
				}
				return json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]any{"ids": ids, "pieces": pieces})
			}
			parts := make([]string, len(ids))
			for i, id := range ids {
				parts[i] = fmt.Sprint(id)
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), strings.Join(parts, " "))
			return err
		},
	}
	c.Flags().StringVar(&path, "tokenizer", "tokenizer.json", "tokenizer file written by 'loom tokenizer train'")
	c.Flags().BoolVar(&asJSON, "json", false, "print ids and their text pieces as JSON")
	return c
}

func newTokenizerDecodeCmd() *cobra.Command {
	var path string
	c := &cobra.Command{
		Use:   "decode --tokenizer tokenizer.json ID...",
		Short: "Print the text of token ids",
		Long: `Decodes the ids given as arguments and prints the text.

Example:
  loom tokenizer decode --tokenizer tokenizer.json 259 312 97`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tok, err := tokenizer.Open(path)
			if err != nil {
				return err
			}
			ids := make([]int, len(args))
			for i, a := range args {
				if _, err := fmt.Sscan(a, &ids[i]); err != nil {
					return fmt.Errorf("argument %d %q: not an integer id", i+1, a)
				}
			}
			s, err := tok.Decode(ids)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), s)
			return err
		},
	}
	c.Flags().StringVar(&path, "tokenizer", "tokenizer.json", "tokenizer file written by 'loom tokenizer train'")
	return c
}

func newBenchTokenizerCmd() *cobra.Command {
	var (
		asJSON bool
		words  []int
		merges int
		seed   uint64
	)
	c := &cobra.Command{
		Use:   "tokenizer",
		Short: "Time BPE training (incremental pair counts) against the naive reference trainer",
		Long: `Trains the byte-level BPE tokenizer on deterministic synthetic text (Zipf-
distributed words) with the incremental trainer and with the naive reference
trainer (which recounts every pair before each merge), checks that both learn
the same merges, and prints the two times and their ratio.

Example:
  loom bench tokenizer --words 20000,80000 --merges 500
  loom bench tokenizer --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var rows []tokenizer.BenchResult
			for _, w := range words {
				r, err := tokenizer.BenchTrain(seed, w, merges, time.Now)
				if err != nil {
					return err
				}
				rows = append(rows, r)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{"benchmark": "tokenizer-train", "merges": merges, "seed": seed, "results": rows})
			}
			fmt.Fprintf(out, "%-8s %-9s %-7s %-12s %-14s %s\n", "words", "bytes", "merges", "train (s)", "reference (s)", "speedup")
			for _, r := range rows {
				fmt.Fprintf(out, "%-8d %-9d %-7d %-12.3f %-14.3f %.1fx\n", r.Words, r.Bytes, r.Merges, r.FastSec, r.ReferenceSec, r.Speedup)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	c.Flags().IntSliceVar(&words, "words", []int{20000, 80000}, "corpus sizes in words")
	c.Flags().IntVar(&merges, "merges", 500, "merges to learn")
	c.Flags().Uint64Var(&seed, "seed", 1, "seed of the synthetic text")
	return c
}

func init() {
	rootCmd.AddCommand(newTokenizerCmd())
	benchCmd.AddCommand(newBenchTokenizerCmd())
}
