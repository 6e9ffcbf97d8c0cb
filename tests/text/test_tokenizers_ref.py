#!/usr/bin/python3
"""Compares miclip's C tokenizers (through tests/text/text_tool) with the Python references of
ref_tokenizers.py on a learned BPE vocabulary and a WordPiece vocabulary, over hand-picked and
random texts: ASCII, accents (composed and decomposed), Greek with final sigma, U+0130,
Cyrillic, CJK, digits of several scripts, emoji, HTML entities, contractions, special-token
strings, control characters, every White_Space character, invalid UTF-8 and very long input.
Usage: test_tokenizers_ref.py TEXT_TOOL WORKDIR"""
import os
import random
import subprocess
import sys
import unicodedata

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_tokenizers as R  # noqa: E402

tool, work = sys.argv[1], sys.argv[2]
os.makedirs(work, exist_ok=True)
rng = random.Random(1234)

WORDS = ("a photo of the cat dog red blue circle cross striped dotted checkered plain noisy "
         "hello world don't it's we're they've i'm you'll he'd café naïve résumé über straße "
         "σοφία ΟΔΥΣΣΕΥΣ москва привет 東京 日本語 한국어 ١٢٣ ४५६ ½ ² 3.14 2024 ÉCOLE İstanbul "
         "😀 🐱 👍🏽 &amp; &lt;b&gt; &eacute; &#233; &#x41; &copy &notin &notit; &#0; &#x110000; "
         "<|startoftext|> <|endoftext|> ǅ ﬁ ＡＢＣ").split()
SPECIAL = ["", " ", "   \t\n ", "hello   world", "don't stop", "3.14", "a photo of a cat.",
           "A PHOTO OF A CAT.", "ΣΑΣ ΟΔΟΣ Σ aΣ Σa", "İIıi", "e\u0301 café", "x\u0345y", "'ſ",
           "\u00a0\u2028\u3000\u0085\x1c\x1d hi \x1c", "\x0b\x0c tab\tnew\nline\r",
           "&amp;amp; &ampx &AMP; &#65&#66; &#x1F600; &#55296; &#128; &#13;", "&Eacute;cole &eacutex",
           "<|startoftext|>x<|endoftext|>", "<|ENDOFTEXT|>", "!!!???...", "’curly’ “quotes”",
           "a" * 300, "ab" * 400, " ".join(["cat"] * 100), "東京" * 50, "😀" * 40,
           "\u200b zero\u200bwidth \ufeff bom", "\x00nul\x00", "mixed123abc456", "x'y 'll 'LL"]


def rand_text():
    parts = []
    for _ in range(rng.randint(0, 12)):
        r = rng.random()
        if r < 0.5:
            parts.append(rng.choice(WORDS))
        elif r < 0.8:
            while True:
                c = rng.choice([rng.randint(0x20, 0x7e), rng.randint(0xa0, 0x24f), rng.randint(0x370, 0x4ff),
                                rng.randint(0x2000, 0x206f), rng.randint(0x3000, 0x30ff), rng.randint(0x4e00, 0x4e50),
                                rng.randint(0x1f300, 0x1f64f), rng.randint(0, 0x1f)])
                ch = chr(c)
                if unicodedata.category(ch) != "Cn":
                    break
            parts.append(ch * rng.randint(1, 3))
        else:
            parts.append(rng.choice([" ", "  ", "\t", "\n", ".", ",", "'", "&", ";", "#"]))
    return "".join(rng.choice(["", " "]) + p for p in parts)


texts = [t.encode("utf-8") for t in SPECIAL + WORDS] + [rand_text().encode("utf-8") for _ in range(400)]
bad = [b"\xff", b"abc\xc3", b"\xc3\x28", b"\xe2\x82", b"\xe2\x82\x28", b"\xed\xa0\x80", b"\xf0\x9f\x98",
       b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\x80\x80abc", b"caf\xe9", b"\xf0\x9f\x98\x80\xf0\x9f"]
texts += bad
texts.append(("word " * 20000).encode())  # very long input

# A CLIP-layout vocabulary learned from a corpus with the same kinds of text.
corpus = [rand_text() for _ in range(1500)] + SPECIAL + WORDS * 5
vocab, merges = R.train_bpe(corpus, 600)
clip_dir = os.path.join(work, "clip_vocab")
os.makedirs(clip_dir, exist_ok=True)
R.write_clip_vocab(clip_dir, vocab, merges)

failures = 0
for mode in ["openai", "hf_slow", "hf_fast"]:
    ref = R.ClipRef(clip_dir, mode)
    inp = "".join(t.hex() + "\n" for t in texts)
    out = subprocess.run([tool, "clip", clip_dir, mode, "replace"], input=inp, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert len(out) == len(texts), (len(out), len(texts))
    for t, line in zip(texts, out):
        s = t.decode("utf-8", errors="replace")
        want_tok = ref.tokenize(s)
        want_enc = ref.encode(s)
        got = line.split("|")
        got_tok = [int(x) for x in got[0].split()] if got[0] else []
        got_enc = [int(x) for x in got[1].split()]
        if got_tok != want_tok or got_enc != want_enc:
            failures += 1
            if failures < 15:
                print("MISMATCH clip/%s %r\n  want %s\n  got  %s" % (mode, s[:80], want_tok[:40], got_tok[:40]))
    # invalid UTF-8 with the reject policy: an error for exactly the ill-formed inputs
    out = subprocess.run([tool, "clip", clip_dir, mode, "reject"], input="".join(t.hex() + "\n" for t in bad + texts[:20]),
                         capture_output=True, text=True, check=True).stdout.splitlines()
    for t, line in zip(bad + texts[:20], out):
        try:
            t.decode("utf-8")
            ok = True
        except UnicodeDecodeError:
            ok = False
        if ok == line.startswith("ERR"):
            failures += 1
            print("REJECT policy wrong for %r: %s" % (t, line[:40]))
    print("clip/%s: %d texts compared" % (mode, len(texts)))

# decode(encode(x)) for ASCII words: the words joined by spaces plus a trailing space
ref = R.ClipRef(clip_dir, "openai")
ascii_words = [w for w in WORDS if w.isascii() and w.isalpha()]
lines = []
for _ in range(50):
    ws = [rng.choice(ascii_words).lower() for _ in range(rng.randint(1, 6))]
    lines.append((ws, " ".join(str(i) for i in ref.tokenize(" ".join(ws)))))
out = subprocess.run([tool, "clip-decode", clip_dir], input="".join(l + "\n" for _, l in lines), capture_output=True,
                     text=True, check=True).stdout.splitlines()
for (ws, _), h in zip(lines, out):
    got = bytes.fromhex(h).decode()
    if got != " ".join(ws) + " ":
        failures += 1
        print("DECODE mismatch %r -> %r" % (ws, got))

# WordPiece: a BERT-like vocabulary of whole words and ## pieces from the same corpus
wp_dir = os.path.join(work, "wp_vocab")
os.makedirs(wp_dir, exist_ok=True)
toks = ["<s>", "<pad>", "</s>", "<unk>"]
seen = set(toks)
wref0 = R.WordPieceRef.__new__(R.WordPieceRef)
for t in corpus:
    for w in wref0.words(wref0.normalize(t)):
        for cand in [w, w[:2], w[:3]] + ["##" + w[i:] for i in range(1, len(w))] + ["##" + c for c in w] + list(w):
            if cand and cand not in seen and rng.random() < 0.3:
                seen.add(cand)
                toks.append(cand)
toks += ["[UNK]", "<mask>"]
with open(os.path.join(wp_dir, "vocab.txt"), "w", encoding="utf-8") as f:
    f.write("\n".join(toks) + "\n")
with open(os.path.join(wp_dir, "sentence_bert_config.json"), "w") as f:
    f.write('{"max_seq_length": 40, "do_lower_case": false}')
wref = R.WordPieceRef(wp_dir, max_length=40)
wtexts = texts + [b"a<s>b</s>c<mask>[UNK] <pad>", b"  lead and trail  ", ("x" * 101).encode(), ("y" * 100).encode()]
out = subprocess.run([tool, "wp", wp_dir], input="".join(t.hex() + "\n" for t in wtexts), capture_output=True,
                     text=True, check=True).stdout.splitlines()
assert len(out) == len(wtexts)
for t, line in zip(wtexts, out):
    s = t.decode("utf-8", errors="replace")
    want = wref.encode(s)
    got = [int(x) for x in line.split()] if not line.startswith("ERR") else line
    if got != want:
        failures += 1
        if failures < 30:
            print("MISMATCH wordpiece %r\n  want %s\n  got  %s" % (s[:80], want[:30], got[:30] if isinstance(got, list) else got))
print("wordpiece: %d texts compared" % len(wtexts))
print("FAILURES: %d" % failures)
sys.exit(1 if failures else 0)
