// Package tokenizer turns text into token ids and back for the language
// models in models/.
//
// The built-in tokenizer is a byte-level BPE (Sennrich et al. 2016, "Neural
// Machine Translation of Rare Words with Subword Units", §3.2; byte-level as
// in GPT-2, Radford et al. 2019 §2.2): the first 256 ids are the bytes, every
// further id is a learned merge of two earlier ids, and the special tokens
// (<pad>, <bos>, <eos>, <image>, <img>, </img>, <vision>, </vision>, <eof>,
// <eov>, [DEC]) come last. Because every byte has an id, Encode accepts any
// byte string and Decode(Encode(s)) == s for every s.
//
// Training (Train) is deterministic: the same corpus and vocabulary size give
// the same merges, ties broken by the smaller pair of ids. Text is first cut
// into pre-tokens (a run of letters, a run of digits, a run of other
// non-space bytes, each with at most one leading space, or a run of spaces)
// and merges never cross a pre-token boundary.
//
// Usage:
//
//	tok, err := tokenizer.Train(tokenizer.TrainConfig{VocabSize: 512}, corpus)
//	ids := tok.Encode("<image> a cat on a mat")
//	text, err := tok.Decode(ids)
//	err = tokenizer.Save("tokenizer.json", tok)
//	tok2, err := tokenizer.Load("tokenizer.json")
//
// Models depend only on the Tokenizer interface, so a user's own tokenizer
// can be plugged in by implementing it and registering a loader for its
// file format (Register); Open dispatches on a JSON file's "format" field.
// Load reads the JSON file written by Save (format "loom-bpe-v1") and names
// the field at fault when the file is malformed.
package tokenizer
