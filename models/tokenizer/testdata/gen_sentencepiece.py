#!/usr/bin/python3
"""Trains the small SentencePiece models under testdata/sp/ and records what
the real sentencepiece library does with them (testdata/sp/expected.json).

Run from models/tokenizer/testdata with the system Python, which has the
sentencepiece module (0.1.97 when these files were made):

    /usr/bin/python3 gen_sentencepiece.py

The Go test TestSentencePieceMatchesLibrary requires Loom's ids to equal the
ids sentencepiece's EncodeAsIds gives, and Loom's Decode to equal
sentencepiece's DecodeIds, for every text in TEST_TEXTS and for every id list
in "decode_cases".

Training is deterministic for a given sentencepiece version (one thread, a
fixed corpus, no sampling), so re-running should reproduce the .model files;
if a new version changes them, the expected ids are regenerated with them.
"""

import gzip
import json
import os
import random

import sentencepiece as spm

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "sp")

WORDS = (
    "the a cat dog sat on mat image photo of and with in is was to picture "
    "shows small large red blue green man woman child people street car "
    "tree house water sky cloud sun table chair window door book language "
    "model vision token train loss step batch learning rate gradient "
    "café naïve résumé über straße façade señor déjà vu coöperate "
    "Hello World The A An It This That I'm don't it's we're they've "
    "123 42 2024 7 3.14 100% $5 #tag @user e-mail well-known (parens) "
    "[brackets] {braces} \"quoted\" 'single' a/b x=y; foo: bar, baz."
).split()


def corpus():
    r = random.Random(14)
    lines = []
    for _ in range(3000):
        n = r.randint(3, 14)
        ws = [r.choice(WORDS) for _ in range(n)]
        sep = r.choice([" ", " ", " ", " ", "  "])
        lines.append(sep.join(ws).capitalize())
    # a little non-Latin text so some multi-byte characters are pieces
    lines += ["Ελληνικά γράμματα και λέξεις"] * 20
    lines += ["Привет мир это тест"] * 20
    lines += ["中文 文本 测试 图片 猫"] * 20
    return lines


# Texts the Go test encodes. Several use characters that are not in the
# training corpus (the byte-fallback and unknown paths) and whitespace that
# the normalisers treat differently.
TEST_TEXTS = [
    "",
    " ",
    "   ",
    "a",
    "Hello World",
    "the cat sat on the mat",
    "  leading spaces",
    "trailing spaces   ",
    "multiple    inner     spaces",
    "tab\tseparated\tvalues",
    "line one\nline two\r\nline three",
    "\n\n\n",
    "café naïve résumé straße",
    "cafe\u0301 decomposed accent",
    "日本語のテキストと漢字",
    "中文 文本 测试",
    "emoji 😀🎉 and 👩\u200d💻",
    "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ １２３",
    "ligature ﬁ ﬂ and ½ ① ™",
    "non-breaking\u00a0space and\u3000ideographic space",
    "control \x01\x02 chars \x7f",
    "zero\u200bwidth",
    "<image> a photo of a cat <image>",
    "<s> looks special </s> but is text",
    "x=42; y = [1, 2, 3]  # comment",
    "Ελληνικά και Привет мир",
    "ⓐⓑⓒ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟘𝟙𝟚",
    "a" * 60,
    "The quick brown fox jumps over the lazy dog. " * 3,
    "mixed\t \n \t whitespace\u2003em space",
    "\U0010fffd private use and \ufffd replacement",
]


def random_texts():
    """Random strings over a pool of characters that the normalisers and
    models treat differently: spaces of several kinds, combining marks,
    full-width forms, CJK, emoji, control characters, pieces of "<image>"."""
    pool = list("abcdefghijklmnopqrstuvwxyz ABCXYZ  .,;'!?-0123456789\t\n") + [
        "é", "e\u0301", "ß", "ﬁ", "Ａ", "１", "\u00a0", "\u3000", "\u2003", "日", "本", "中",
        "😀", "👩\u200d💻", "\x01", "\u200b", "▁", "<", ">", "<image>", "the ", " cat", "ing"]
    r = random.Random(1414)
    return ["".join(r.choice(pool) for _ in range(r.randint(1, 40))) for _ in range(60)]


TEST_TEXTS += random_texts()

MODELS = [
    # name, options. The BPE + byte_fallback + identity model is LLaMA-like
    # (LLaMA sets remove_extra_whitespaces false as well).
    ("bpe_identity", dict(model_type="bpe", vocab_size=600, byte_fallback=True,
                          normalization_rule_name="identity",
                          remove_extra_whitespaces=False,
                          user_defined_symbols=["<image>"])),
    # No byte fallback: characters outside the vocabulary become <unk>, and
    # remove_extra_whitespaces is left at its default (true).
    ("bpe_unk", dict(model_type="bpe", vocab_size=400,
                     normalization_rule_name="identity")),
    # A small custom normalisation rule set: its precompiled_charsmap is a
    # darts-clone trie like nmt_nfkc's, a few hundred bytes instead of 240 KB.
    ("bpe_rules", dict(model_type="bpe", vocab_size=400,
                       normalization_rule_tsv=os.path.join(OUT, "rules.tsv"))),
    # The default normaliser (nmt_nfkc); T5-like. Stored gzipped (240 KB raw,
    # nearly all of it the charsmap).
    ("unigram_nfkc", dict(model_type="unigram", vocab_size=400,
                          user_defined_symbols=["<image>"])),
    ("unigram_identity", dict(model_type="unigram", vocab_size=500, byte_fallback=True,
                              normalization_rule_name="identity",
                              pad_id=3, unk_id=0, bos_id=1, eos_id=2)),
]


# rules.tsv: source code points <TAB> target code points (hex). Upper-case
# ASCII letters fold to lower case, "fi" (two letters) becomes the ligature,
# the ligature becomes "fi", tabs become spaces, and U+00A0 is removed.
RULES = [("%x" % c, "%x" % (c + 32)) for c in range(0x41, 0x5B)] + [
    ("66 69", "fb01"), ("fb01", "66 69"), ("9", "20"), ("a0", ""), ("e9", "65 301"),
]


def main():
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "rules.tsv"), "w") as f:
        for src, dst in RULES:
            f.write(src + "\t" + dst + "\n")
    path = os.path.join(OUT, "corpus.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(corpus()) + "\n")
    expected = {"sentencepiece_version": spm.__version__, "texts": TEST_TEXTS, "models": {}}
    for name, opts in MODELS:
        spm.SentencePieceTrainer.train(
            input=path, model_prefix=os.path.join(OUT, name), num_threads=1,
            character_coverage=0.9995, hard_vocab_limit=False,
            minloglevel=2, **opts)
        os.remove(os.path.join(OUT, name + ".vocab"))
        model = os.path.join(OUT, name + ".model")
        sp = spm.SentencePieceProcessor(model_file=model)
        file = name + ".model"
        if name == "unigram_nfkc":
            with open(model, "rb") as f, gzip.GzipFile(model + ".gz", "wb", mtime=0) as g:
                g.write(f.read())
            os.remove(model)
            file += ".gz"
        ids = [sp.encode(t) for t in TEST_TEXTS]
        r = random.Random(len(name))
        # Arbitrary id lists, including control, unknown and lone byte ids.
        cases = [[r.randrange(sp.get_piece_size()) for _ in range(r.randint(1, 12))] for _ in range(40)]
        cases += [[sp.unk_id()], [sp.unk_id(), sp.unk_id()], [sp.bos_id()] + ids[4] + [sp.eos_id()]]
        expected["models"][name] = {
            "file": file,
            "vocab_size": sp.get_piece_size(),
            "bos_id": sp.bos_id(), "eos_id": sp.eos_id(), "unk_id": sp.unk_id(), "pad_id": sp.pad_id(),
            "ids": ids,
            "decoded": [sp.decode(x) for x in ids],
            "decode_cases": [{"ids": c, "text": sp.decode(c)} for c in cases],
        }
    os.remove(path)
    os.remove(os.path.join(OUT, "rules.tsv"))
    with open(os.path.join(OUT, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
