// Package tokenizer turns text into token ids and back for the language
// models in models/.
//
// # Loom's own tokenizer
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
// # Pretrained tokenizers
//
// OpenDir reads the tokenizer of a Hugging Face model directory: a
// tokenizer.json with a BPE model (*HF: byte-level BPE as in GPT-2, OPT,
// Qwen2 and Llama-3, or SentencePiece-style BPE with byte fallback as in
// LLaMA), with tokenizer_config.json and chat_template.jinja when present,
// or else a SentencePiece tokenizer.model (*SentencePiece: BPE or Unigram,
// any precompiled normalizer). Both implement Pretrained, which adds the
// BOS/EOS/PAD ids, whether BOS or EOS is added, the special tokens, the chat
// template (as text; Loom has no Jinja engine), and the files as read, which
// WriteFiles copies into an exported model directory unchanged.
//
//	tok, err := tokenizer.OpenDir("llama-2-7b")
//	sp := tok.Specials()
//	ids := tok.Encode("a photo of a cat")
//	if sp.AddBOS {
//		ids = append([]int{sp.BOS}, ids...)
//	}
//	err = tokenizer.WriteFiles("export/", tok)
//
// The ids are those of the reference libraries: the tests compare them with
// the sentencepiece library's on models it trained, and with a port of
// GPT-2's encoder.py and sentencepiece-converted LLaMA-style files for
// tokenizer.json (testdata/gen_*.py; docs/tokenizers.md says what was
// verified and what is not supported). Unknown component types in a
// tokenizer.json are errors naming the JSON path.
//
// # Plugging in other tokenizers
//
// Models depend only on the Tokenizer interface, so a user's own tokenizer
// can be plugged in by implementing it and registering a loader for its
// file format (Register). Open reads a SentencePiece .model, a Hugging Face
// tokenizer.json, or a JSON file whose "format" field names a registered
// loader. Load reads the JSON file written by Save (format "loom-bpe-v1")
// and names the field at fault when the file is malformed.
package tokenizer
