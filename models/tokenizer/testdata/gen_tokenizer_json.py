#!/usr/bin/python3
"""Builds the Hugging Face tokenizer.json fixtures under testdata/hf/ and the
ids a reference implementation gives for them (testdata/hf/expected.json).

Run after gen_sentencepiece.py, from models/tokenizer/testdata, with the
system Python (it needs the sentencepiece module):

    /usr/bin/python3 gen_tokenizer_json.py

There is no `tokenizers` (or `regex`) module here, so the references are:

* llama, llama-metaspace: SentencePiece-style BPE with byte fallback,
  converted from sp/bpe_identity.model the way transformers' LlamaConverter
  does (vocab in piece order, merges from SentencePieceExtractor ordered by
  score). The expected ids are sentencepiece's own EncodeAsIds of the same
  model, which the conversion is designed to reproduce. Texts containing an
  added token are left out (tokenizers splits those off first and
  normalises each side separately, which sentencepiece does not do); the
  Go tests check those by hand. For the Metaspace variant, whose
  prepend_scheme "first" does not add "▁" to a text that already starts
  with a space or "▁", the expected ids are sentencepiece's ids of the text
  without that first character (the same normalised string).
* gpt2, qwen2: byte-level BPE trained below on a small corpus. The
  expected ids come from a port of openai/gpt-2 src/encoder.py (bpe() and
  encode() as published), with the split regex run by Python's re. Python's
  re has no \\p{L}/\\p{N}, so the classes are spelled out as explicit
  character sets built from unicodedata categories (L*, N*), and \\s as the
  Unicode White_Space set; the lookahead (?!\\S) is re's own. Qwen2 adds NFC
  (unicodedata.normalize) and its own pattern; added tokens are split off
  first.
"""

import json
import os
import random
import re
import sys
import unicodedata

import sentencepiece as spm

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from gen_sentencepiece import TEST_TEXTS, corpus  # noqa: E402

OUT = os.path.join(HERE, "hf")


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")


# ---------------------------------------------------------------- LLaMA --

def llama_fixtures(expected):
    model = os.path.join(HERE, "sp", "bpe_identity.model")
    sp = spm.SentencePieceProcessor(model_file=model)
    n = sp.get_piece_size()
    vocab = {sp.id_to_piece(i): i for i in range(n)}
    scores = {sp.id_to_piece(i): sp.get_score(i) for i in range(n)}
    # transformers SentencePieceExtractor.extract(vocab_scores)
    merges = []
    for merge, piece_score in scores.items():
        local = []
        for index in range(1, len(merge)):
            l, r = merge[:index], merge[index:]
            if l in vocab and r in vocab:
                local.append((l, r, piece_score))
        local = sorted(local, key=lambda x: (vocab[x[0]], vocab[x[1]]))
        merges.extend(local)
    merges = sorted(merges, key=lambda v: v[2], reverse=True)
    merges = [(v[0], v[1]) for v in merges]

    def added(i, special):
        return {"id": i, "content": sp.id_to_piece(i), "single_word": False, "lstrip": False,
                "rstrip": False, "normalized": False, "special": special}
    image = sp.piece_to_id("<image>")
    added_tokens = [added(0, True), added(1, True), added(2, True), added(image, False)]
    decoder = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}

    def template(eos):
        single = [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}]
        special = {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}
        if eos:
            single.append({"SpecialToken": {"id": "</s>", "type_id": 0}})
            special["</s>"] = {"id": "</s>", "ids": [2], "tokens": ["</s>"]}
        pair = single + [{"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}]
        return {"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": special}

    def bpe(pairs):
        return {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True,
                "ignore_merges": False, "vocab": vocab,
                "merges": [list(m) for m in merges] if pairs else [a + " " + b for a, b in merges]}

    # legacy LLaMA: Prepend + Replace normaliser, string merges, BOS only
    write_json(os.path.join(OUT, "llama", "tokenizer.json"), {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added_tokens,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
        "pre_tokenizer": None, "post_processor": template(False), "decoder": decoder, "model": bpe(False)})
    tok = {"__type": "AddedToken", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}
    write_json(os.path.join(OUT, "llama", "tokenizer_config.json"), {
        "add_bos_token": True, "add_eos_token": False, "legacy": True,
        "bos_token": dict(tok, content="<s>"), "eos_token": dict(tok, content="</s>"),
        "unk_token": dict(tok, content="<unk>"), "pad_token": None,
        "chat_template": [{"name": "default", "template": "{{ bos_token }}{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}"},
                          {"name": "tool_use", "template": "{{ tools }}"}],
        "model_max_length": 2048, "tokenizer_class": "LlamaTokenizer"})
    # legacy=false: Metaspace pre-tokenizer, pair merges, BOS and EOS, a
    # chat_template.jinja instead of a config
    write_json(os.path.join(OUT, "llama-metaspace", "tokenizer.json"), {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added_tokens,
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False},
        "post_processor": template(True), "decoder": decoder, "model": bpe(True)})
    with open(os.path.join(OUT, "llama-metaspace", "chat_template.jinja"), "w") as f:
        f.write("{% for m in messages %}<s>{{ m['content'] }}</s>{% endfor %}\n")

    specials = ("<s>", "</s>", "<unk>", "<image>")
    for name, meta in (("llama", False), ("llama-metaspace", True)):
        cases = []
        for t in TEST_TEXTS:
            if any(s in t for s in specials):
                continue
            src = t
            if meta:
                if t in (" ", "▁"):
                    continue
                if t[:1] in (" ", "▁"):
                    src = t[1:]
            ids = sp.encode(src)
            cases.append({"text": t, "ids": ids, "decoded": sp.decode(ids)})
        expected[name] = {"reference": "sentencepiece %s EncodeAsIds/DecodeIds of sp/bpe_identity.model" % spm.__version__,
                          "cases": cases}


# ----------------------------------------------------------- byte level --

def bytes_to_unicode():
    """openai/gpt-2 src/encoder.py"""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2 ** 8):
        if b not in bs:
            bs.append(b)
            cs.append(2 ** 8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def get_pairs(word):
    pairs = set()
    prev = word[0]
    for ch in word[1:]:
        pairs.add((prev, ch))
        prev = ch
    return pairs


def char_class(pred):
    """A regex character-class body listing every code point with pred."""
    out, start = [], None
    for cp in range(0x110000 + 1):
        ok = cp < 0x110000 and pred(cp)
        if ok and start is None:
            start = cp
        elif not ok and start is not None:
            a, b = start, cp - 1
            out.append(re.escape(chr(a)) if a == b else re.escape(chr(a)) + "-" + re.escape(chr(b)))
            start = None
    return "".join(out)


WHITE_SPACE = set(range(0x9, 0xE)) | {0x20, 0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000} | set(range(0x2000, 0x200B))
L = char_class(lambda c: unicodedata.category(chr(c)).startswith("L"))
N = char_class(lambda c: unicodedata.category(chr(c)).startswith("N"))
S = char_class(lambda c: c in WHITE_SPACE)


def expand(p):
    return (p.replace(r"[^\s\p{L}\p{N}]", "[^" + S + L + N + "]")
             .replace(r"[^\r\n\p{L}\p{N}]", "[^\r\n" + L + N + "]")
             .replace(r"\p{L}", "[" + L + "]").replace(r"\p{N}", "[" + N + "]")
             .replace(r"\S", "[^" + S + "]").replace(r"\s", "[" + S + "]"))


GPT2_PAT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
QWEN2_PAT = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""


class Encoder:
    """openai/gpt-2 src/encoder.py, with the pattern and normaliser as
    parameters and added tokens split off first (as tokenizers does)."""

    def __init__(self, encoder, bpe_merges, pat, nfc=False, added=()):
        self.encoder = encoder
        self.decoder = {v: k for k, v in encoder.items()}
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        self.bpe_ranks = dict(zip(bpe_merges, range(len(bpe_merges))))
        self.pat = re.compile(expand(pat))
        self.nfc = nfc
        self.added = sorted(added, key=len, reverse=True)

    def bpe(self, token):
        word = tuple(token)
        pairs = get_pairs(word)
        if not pairs:
            return token
        while True:
            bigram = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new_word = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                    new_word.extend(word[i:j])
                    i = j
                except ValueError:
                    new_word.extend(word[i:])
                    break
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
            if len(word) == 1:
                break
            pairs = get_pairs(word)
        return " ".join(word)

    def pretokens(self, text):
        if self.nfc:
            text = unicodedata.normalize("NFC", text)
        for token in re.findall(self.pat, text):
            yield "".join(self.byte_encoder[b] for b in token.encode("utf-8"))

    def encode(self, text):
        out = []
        while text:
            at, tok = len(text), None
            for i in range(len(text)):
                tok = next((a for a in self.added if text.startswith(a, i)), None)
                if tok:
                    at = i
                    break
            for token in self.pretokens(text[:at]):
                out.extend(self.encoder[t] for t in self.bpe(token).split(" "))
            if not tok:
                break
            out.append(self.encoder[tok])
            text = text[at + len(tok):]
        return out

    def decode(self, tokens):
        text = "".join(self.decoder[t] for t in tokens)
        return bytearray(self.byte_decoder[c] for c in text).decode("utf-8", errors="replace")


def train_bytelevel(enc, lines, n_merges):
    """Plain BPE training on byte-level pre-tokens: merge the most frequent
    pair, ties broken by the smaller pair (deterministic)."""
    counts = {}
    for line in lines:
        for t in enc.pretokens(line):
            counts[t] = counts.get(t, 0) + 1
    words = {tuple(w): c for w, c in counts.items()}
    merges = []
    for _ in range(n_merges):
        pc = {}
        for w, c in words.items():
            for p in zip(w, w[1:]):
                pc[p] = pc.get(p, 0) + c
        if not pc:
            break
        best = min(pc, key=lambda p: (-pc[p], p))
        merges.append(best)
        a, b = best
        nw = {}
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            nw[tuple(out)] = nw.get(tuple(out), 0) + c
        words = nw
    return merges


def bytelevel_fixture(expected, name, pat, nfc, added, n_merges, pairs):
    b2u = bytes_to_unicode()
    vocab = {}
    for b in sorted(b2u, key=lambda b: ord(b2u[b])):
        vocab[b2u[b]] = len(vocab)
    enc = Encoder(dict(vocab), [], pat, nfc)
    merges = train_bytelevel(enc, corpus(), n_merges)
    for a, b in merges:
        vocab[a + b] = len(vocab)
    added_tokens = []
    for a in added:
        added_tokens.append({"id": len(vocab) + len(added_tokens), "content": a, "single_word": False,
                             "lstrip": False, "rstrip": False, "normalized": False, "special": True})
    full = dict(vocab)
    for t in added_tokens:
        full[t["content"]] = t["id"]
    enc = Encoder(full, merges, pat, nfc, added)
    if nfc:
        normalizer = {"type": "NFC"}
        pre = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": pat}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]}
    else:
        normalizer = None
        pre = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    write_json(os.path.join(OUT, name, "tokenizer.json"), {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added_tokens,
        "normalizer": normalizer, "pre_tokenizer": pre,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab,
                  "merges": [[a, b] for a, b in merges] if pairs else [a + " " + b for a, b in merges]}})
    texts = TEST_TEXTS + ["before<|endoftext|>after", "<|im_start|>user\nhi<|im_end|>\n", "'S 'ſ 'LL 'Re x'd"]
    cases = [{"text": t, "ids": enc.encode(t), "decoded": enc.decode(enc.encode(t))} for t in texts]
    r = random.Random(len(name))
    decode_cases = []
    for _ in range(40):
        ids = [r.randrange(len(full)) for _ in range(r.randint(1, 10))]
        decode_cases.append({"ids": ids, "text": enc.decode(ids)})
    expected[name] = {"reference": "port of openai/gpt-2 src/encoder.py (bpe, encode, decode with errors='replace'); "
                      "regex by Python re with \\p{L}/\\p{N}/\\s expanded from unicodedata %s" % unicodedata.unidata_version
                      + ("; NFC by unicodedata" if nfc else ""),
                      "cases": cases, "decode_cases": decode_cases}
    return name


def main():
    expected = {}
    llama_fixtures(expected)
    bytelevel_fixture(expected, "gpt2", GPT2_PAT, False, ["<|endoftext|>"], 300, False)
    bytelevel_fixture(expected, "qwen2", QWEN2_PAT, True, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], 300, True)
    write_json(os.path.join(OUT, "qwen2", "tokenizer_config.json"), {
        "bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "unk_token": None,
        "add_prefix_space": False, "errors": "replace", "model_max_length": 32768,
        "chat_template": "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
        "tokenizer_class": "Qwen2Tokenizer"})
    write_json(os.path.join(OUT, "expected.json"), expected)


if __name__ == "__main__":
    main()
