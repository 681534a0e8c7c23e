#!/usr/bin/python3
"""Cuts a corpus with loomPattern (models/tokenizer/hfwrite.go), the regex
HFFiles writes into tokenizer.json's Split pre-tokenizer, using Python's re
module (which has the lookahead Go's RE2 lacks, with the leftmost-first
alternation the tokenizers library's Oniguruma uses), and writes the pieces
to loom_pretok.json. TestLoomPatternMatchesPython requires Loom's own
pre-tokenizer to cut every text the same way.

    /usr/bin/python3 models/tokenizer/testdata/gen_loom_pretok.py
"""
import json
import os
import re

here = os.path.dirname(os.path.abspath(__file__))
src = open(os.path.join(here, "..", "hfwrite.go"), encoding="utf-8").read()
pattern = re.search(r"const loomPattern = `([^`]*)`", src).group(1)
# Oniguruma's \x{H...} is \UHHHHHHHH in Python.
py = re.sub(r"\\x\{([0-9A-Fa-f]+)\}", lambda m: "\\U%08x" % int(m.group(1), 16), pattern)
rx = re.compile(py)

corpus = [
    "a red circle on a blue background",
    "  leading spaces and trailing   ",
    "tabs\tand\t\tnewlines\n\nmixed \t\n x",
    "word  \n  word\n\tword \tword\t word",
    "numbers 12345 and 3.14159, x2y3",
    "symbols!!! ?? ... (parens) [brackets] {braces} <tags> a+b=c",
    "naïve café über Straße — «quotes» ‘single’",
    "日本語のテキスト 中文 한국어",
    "emoji 🙂🙂 and 👩‍👩‍👧 family",
    "nbsp\u00a0here and\u2003em-space and\u3000ideographic",
    "vertical\x0btab and form\x0cfeed \x0b x",
    "\r\n windows\r\nlines \r\n",
    "it's they're we've I'm you'll he'd",
    " ",
    "\n",
    "x",
    "  ",
    " .x",
    "a  .b   1c\t \td",
    "MiXeD CaSe WORDS_with_underscores and-dashes",
]
out = {"pattern": pattern, "cases": []}
for text in corpus:
    pieces = rx.findall(text)
    assert "".join(pieces) == text, (text, pieces)
    out["cases"].append({"text": text, "pieces": pieces})
with open(os.path.join(here, "loom_pretok.json"), "w", encoding="utf-8") as f:
    json.dump(out, f, ensure_ascii=False, indent=1)
    f.write("\n")
