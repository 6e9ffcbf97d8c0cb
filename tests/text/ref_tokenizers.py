#!/usr/bin/python3
"""Reference tokenizers written from specs/hf-models.md sections 4 and 6.4, in Python with the
`regex` module (Debian python3-regex), for comparison with miclip's C tokenizers.

- ClipRef: OpenAI simple_tokenizer / HF slow / HF fast clean-up variants (ftfy absent), the
  CLIP pre-tokenisation regex, bytes_to_unicode and the reference BPE loop (strings, not
  ids: the literal algorithm of simple_tokenizer.bpe).
- WordPieceRef: the fast BertNormalizer + BertPreTokenizer + WordPiece of all-mpnet-base-v2.
- train_bpe: learns a small CLIP-layout vocabulary (bytes, bytes</w>, merges, specials) from
  a corpus, so that tests have a realistic vocab.json/merges.txt without downloads.
"""
import html
import json
import unicodedata

import regex

PAT = regex.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
                    regex.IGNORECASE)


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def get_pairs(word):
    return set(zip(word[:-1], word[1:]))


def whitespace_clean(text):
    return regex.sub(r"\s+", " ", text).strip()


# HF BasicTokenizer helpers (transformers/models/bert/tokenization_bert.py)
def _is_whitespace(ch):
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_control(ch):
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch).startswith("C")


def _is_chinese(cp):
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or
            0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or
            0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def hf_basic_clean(text):
    out = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or _is_control(ch):
            continue
        out.append(" " if _is_whitespace(ch) else ch)
    text = "".join(out)
    text = "".join(" %s " % ch if _is_chinese(ord(ch)) else ch for ch in text)
    text = unicodedata.normalize("NFC", text)
    return " ".join(tok.lower() for tok in text.strip().split())


class ClipRef:
    def __init__(self, folder, clean="openai"):
        with open(folder + "/vocab.json", encoding="utf-8") as f:
            self.encoder = json.load(f)
        self.decoder = {v: k for k, v in self.encoder.items()}
        with open(folder + "/merges.txt", encoding="utf-8") as f:
            merges = f.read().strip().split("\n")[1:49152 - 256 - 2 + 1]
        merges = [tuple(m.split()) for m in merges]
        self.bpe_ranks = dict(zip(merges, range(len(merges))))
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        self.cache = {"<|startoftext|>": "<|startoftext|>", "<|endoftext|>": "<|endoftext|>"}
        self.clean = clean
        self.unk = self.encoder["<|endoftext|>"]

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        pairs = get_pairs(word)
        if not pairs:
            return token + "</w>"
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
        word = " ".join(word)
        self.cache[token] = word
        return word

    def clean_text(self, text):
        if self.clean == "openai":  # fix_text replaced by NFC (ftfy is not in Debian)
            text = unicodedata.normalize("NFC", text)
            text = html.unescape(html.unescape(text)).strip()
            return whitespace_clean(text).lower()
        if self.clean == "hf_fast":  # NFC, \s+ -> " ", char-wise lowercase (Rust)
            text = unicodedata.normalize("NFC", text)
            text = regex.sub(r"\s+", " ", text)
            return "".join(c.lower() for c in text)
        if self.clean == "hf_slow":
            return hf_basic_clean(text)
        raise ValueError(self.clean)

    def tokenize(self, text):
        text = self.clean_text(text)
        ids = []
        for token in regex.findall(PAT, text):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder.get(t, self.unk) for t in self.bpe(token).split(" "))
        return ids

    def encode(self, text, context=77):
        toks = [self.encoder["<|startoftext|>"]] + self.tokenize(text) + [self.encoder["<|endoftext|>"]]
        if len(toks) > context:
            toks = toks[:context]
            toks[-1] = self.encoder["<|endoftext|>"]
        return toks + [0] * (context - len(toks))

    def decode(self, ids):
        text = "".join(self.decoder[i] for i in ids)
        return bytearray([self.byte_decoder[c] for c in text]).decode("utf-8", errors="replace").replace("</w>", " ")


def train_bpe(corpus_texts, n_merges):
    """Learns merges in CLIP's layout from pieces of the corpus (the regex on cleaned text)."""
    be = bytes_to_unicode()
    counts = {}
    for text in corpus_texts:
        for tok in regex.findall(PAT, whitespace_clean(text).lower()):
            if tok in ("<|startoftext|>", "<|endoftext|>"):
                continue
            w = "".join(be[b] for b in tok.encode("utf-8"))
            word = tuple(w[:-1]) + (w[-1] + "</w>",)
            counts[word] = counts.get(word, 0) + 1
    merges = []
    words = dict(counts)
    for _ in range(n_merges):
        pc = {}
        for w, c in words.items():
            for p in zip(w[:-1], w[1:]):
                pc[p] = pc.get(p, 0) + c
        if not pc:
            break
        best = max(sorted(pc), key=lambda p: pc[p])
        merges.append(best)
        nw = {}
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i < len(w) - 1 and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            nw[tuple(out)] = nw.get(tuple(out), 0) + c
        words = nw
    vocab = list(be.values())
    vocab = vocab + [v + "</w>" for v in vocab]
    for m in merges:
        vocab.append("".join(m))
    vocab.extend(["<|startoftext|>", "<|endoftext|>"])
    return {v: i for i, v in enumerate(vocab)}, merges


def write_clip_vocab(folder, vocab, merges):
    with open(folder + "/vocab.json", "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(folder + "/merges.txt", "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write("%s %s\n" % (a, b))


# ---- WordPiece (fast tokenizer of all-mpnet-base-v2) ------------------------------------

WP_SPECIALS = ["<s>", "</s>", "<pad>", "<mask>", "[UNK]"]


def _rust_is_whitespace(ch):
    return ch in "\t\n\r" or bool(regex.match(r"\s", ch))


def _rust_is_other(ch):
    return unicodedata.category(ch) in ("Cc", "Cf", "Cn", "Co", "Cs")


def _is_bert_punc(ch):
    o = ord(ch)
    return (33 <= o <= 47 or 58 <= o <= 64 or 91 <= o <= 96 or 123 <= o <= 126 or
            unicodedata.category(ch).startswith("P"))


class WordPieceRef:
    def __init__(self, folder, max_length=384):
        with open(folder + "/vocab.txt", encoding="utf-8") as f:
            toks = f.read().split("\n")
        if toks and toks[-1] == "":
            toks = toks[:-1]
        self.vocab = {t: i for i, t in enumerate(toks)}
        self.max_length = max_length

    def normalize(self, text):
        out = []
        for ch in text:
            if ord(ch) == 0 or ord(ch) == 0xFFFD or (ch not in "\t\n\r" and _rust_is_other(ch)):
                continue
            out.append(" " if _rust_is_whitespace(ch) else ch)
        text = "".join(" %s " % c if _is_chinese(ord(c)) else c for c in out)
        text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
        return "".join(c.lower() for c in text)

    def words(self, text):
        words, cur = [], []
        for ch in text:
            if _rust_is_whitespace(ch):
                if cur:
                    words.append("".join(cur))
                cur = []
            elif _is_bert_punc(ch):
                if cur:
                    words.append("".join(cur))
                cur = []
                words.append(ch)
            else:
                cur.append(ch)
        if cur:
            words.append("".join(cur))
        return words

    def wordpiece(self, word):
        unk = [self.vocab["[UNK]"]]
        if len(word) > 100:
            return unk
        out, start = [], 0
        while start < len(word):
            end, cur = len(word), None
            while start < end:
                sub = word[start:end]
                if start > 0:
                    sub = "##" + sub
                if sub in self.vocab:
                    cur = self.vocab[sub]
                    break
                end -= 1
            if cur is None:
                return unk
            out.append(cur)
            start = end
        return out

    def encode(self, text):
        text = text.strip()
        ids = []
        # special-token strings first (leftmost, longest), on the raw text
        i, seg = 0, 0
        pieces = []
        while i < len(text):
            m = None
            for s in sorted(WP_SPECIALS, key=len, reverse=True):
                if text.startswith(s, i):
                    m = s
                    break
            if m:
                pieces.append(("t", text[seg:i]))
                pieces.append(("s", m))
                i += len(m)
                seg = i
            else:
                i += 1
        pieces.append(("t", text[seg:]))
        for kind, p in pieces:
            if kind == "s":
                ids.append(self.vocab[p])
            else:
                for w in self.words(self.normalize(p)):
                    ids.extend(self.wordpiece(w))
        ids = ids[:self.max_length - 2]
        return [self.vocab["<s>"]] + ids + [self.vocab["</s>"]]
