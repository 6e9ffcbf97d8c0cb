#!/usr/bin/python3
"""make_corpus.py - writes the committed safetensors and JSON corpora of tests/io.

Run once with Debian's interpreter (/usr/bin/python3 tests/io/make_corpus.py); the outputs are
committed: tests/io/corpus/*.safetensors (valid and hostile files, also the fuzzing seed corpus),
tests/io/corpus_expect.tsv (for each file: the mc_status name the C reader must return and the
substrings its message must contain besides the file name), and tests/io/json_corpus/*.json.

The safetensors serialisation is written by hand (struct + json + numpy) because Debian 12 has
no python3-safetensors. It follows the format: u64 little-endian header length N, N bytes of JSON,
then the data section with offsets counted from its start.
"""
import json
import os
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
JSON_CORPUS = os.path.join(HERE, "json_corpus")

expect = []  # (file, status, [substrings])


def header_bytes(obj, pad=True):
    h = obj if isinstance(obj, (bytes, bytearray)) else json.dumps(obj, separators=(",", ":")).encode()
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    return h


def raw(name, header, data=b"", n=None, status="format", subs=()):
    """header: dict (serialised) or bytes (verbatim); n overrides the length prefix."""
    h = header_bytes(header)
    blob = struct.pack("<Q", len(h) if n is None else n) + h + data
    put(name, blob, status, subs)


def put(name, blob, status, subs=()):
    with open(os.path.join(CORPUS, name), "wb") as f:
        f.write(blob)
    expect.append((name, status, list(subs)))


def serialise(tensors, metadata=None):
    """tensors: list of (name, dtype, shape, bytes) in data order -> file bytes."""
    hdr, off, data = {}, 0, b""
    for name, dt, shape, b in tensors:
        hdr[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        data += b
    if metadata is not None:
        hdr["__metadata__"] = metadata
    h = header_bytes(hdr)
    return struct.pack("<Q", len(h)) + h + data


def f32(*shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape).astype("<f4").tobytes()


def main():
    os.makedirs(CORPUS, exist_ok=True)
    os.makedirs(JSON_CORPUS, exist_ok=True)
    for d in (CORPUS, JSON_CORPUS):
        for fn in os.listdir(d):
            os.remove(os.path.join(d, fn))

    # --- valid files ---------------------------------------------------------------------
    good = serialise(
        [
            ("embeddings.weight", "F32", (4, 3), f32(4, 3)),
            ("logit_scale", "F32", (), np.array(2.6592, "<f4").tobytes()),
            ("half", "F16", (2, 2), np.array([1, -2, 0.5, 65504], "<f2").tobytes()),
            ("bhalf", "BF16", (3,), np.array([0x3F80, 0xC040, 0x3E20], "<u2").tobytes()),
            ("position_ids", "I64", (1, 5), np.arange(5, dtype="<i8").tobytes()),
            ("num_batches_tracked", "I64", (), np.array(7, "<i8").tobytes()),
            ("empty", "F32", (0, 8), b""),
            ("mask", "BOOL", (3,), bytes([1, 0, 1])),
            ("bytes", "U8", (2,), bytes([0, 255])),
            ("double", "F64", (2,), np.array([0.25, -1e30], "<f8").tobytes()),
        ],
        {"format": "pt"},
    )
    put("valid_small.safetensors", good, "ok")
    put("valid_no_tensors.safetensors", serialise([]), "ok")
    put("valid_only_metadata.safetensors", serialise([], {"format": "pt", "k": "v"}), "ok")
    put("valid_scalar.safetensors", serialise([("s", "F32", (), np.array(1.5, "<f4").tobytes())]), "ok")
    # unpadded header, empty tensor first and last at the same offsets as neighbours
    raw("valid_unpadded_empties.safetensors",
        {"a": {"dtype": "F16", "shape": [0], "data_offsets": [0, 0]},
         "b": {"dtype": "I8", "shape": [2], "data_offsets": [0, 2]},
         "c": {"dtype": "F64", "shape": [3, 0], "data_offsets": [2, 2]}},
        b"\x01\x02", status="ok")

    # --- hostile files ---------------------------------------------------------------------
    put("short_0_bytes.safetensors", b"", "format", ["too short"])
    put("short_7_bytes.safetensors", b"\x10\x00\x00\x00\x00\x00\x00", "format", ["too short"])
    put("truncated_data.safetensors", good[:-3], "format", ["double"])
    put("truncated_header.safetensors", good[:40], "format", ["past the end"])
    raw("header_len_past_eof.safetensors", {}, n=4096, subs=["past the end"])
    raw("header_len_over_cap.safetensors", {}, n=100_000_001, subs=["cap"])
    raw("header_len_huge.safetensors", {}, n=(1 << 64) - 1, subs=["cap"])
    raw("malformed_json.safetensors", b'{"a": {"dtype": "F32", ', subs=["JSON"])
    raw("not_object_array.safetensors", b"[1, 2, 3]", subs=["object"])
    raw("not_object_string.safetensors", b'"hello"', subs=["JSON"])
    raw("invalid_utf8.safetensors", b'{"\xff\xfe": {}}', subs=["JSON"])
    raw("nul_in_key.safetensors", b'{"a\\u0000b": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}}',
        b"\0\0\0\0", subs=["JSON"])
    raw("duplicate_tensor.safetensors",
        b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},'
        b' "w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}', b"\0" * 8,
        subs=["duplicate", "w"])
    raw("duplicate_field.safetensors",
        b'{"w": {"dtype": "F32", "dtype": "F16", "shape": [1], "data_offsets": [0, 4]}}', b"\0" * 4,
        subs=["duplicate", "dtype"])
    t = lambda dt, shape, b, e: {"dtype": dt, "shape": shape, "data_offsets": [b, e]}
    raw("unknown_dtype.safetensors", {"w": t("F7", [4], 0, 4)}, b"\0" * 4,
        subs=["w", "F7", "dtype"])
    raw("unsupported_dtype_f8.safetensors", {"w": t("F8_E4M3", [4], 0, 4)}, b"\0" * 4,
        status="unsupported", subs=["w", "F8_E4M3", "dtype"])
    raw("dtype_not_string.safetensors", {"w": t(4, [1], 0, 4)}, b"\0" * 4, subs=["w", "dtype"])
    raw("dtype_lowercase.safetensors", {"w": t("f32", [1], 0, 4)}, b"\0" * 4, subs=["w", "f32"])
    raw("negative_dim.safetensors", {"w": t("F32", [-1, 4], 0, 16)}, b"\0" * 16, subs=["w", "shape[0]"])
    raw("float_dim.safetensors", {"w": t("F32", [2.0, 2], 0, 16)}, b"\0" * 16, subs=["w", "shape[0]"])
    raw("string_dim.safetensors", {"w": t("F32", [2, "2"], 0, 16)}, b"\0" * 16, subs=["w", "shape[1]"])
    raw("shape_not_list.safetensors", {"w": t("F32", 4, 0, 16)}, b"\0" * 16, subs=["w", "shape"])
    raw("huge_dims_overflow.safetensors", {"w": t("F32", [1 << 62, 1 << 62], 0, 16)}, b"\0" * 16,
        subs=["w", "overflow"])
    raw("huge_dim_bytes_overflow.safetensors", {"w": t("F64", [1 << 61], 0, 16)}, b"\0" * 16,
        subs=["w", "overflow"])
    raw("dim_too_big_for_json.safetensors", b'{"w": {"dtype": "F32", "shape": [99999999999999999999], '
        b'"data_offsets": [0, 4]}}', b"\0" * 4, subs=["JSON"])
    put("too_many_dims.safetensors",
        serialise([("w", "F32", [1] * 9, b"\0" * 4)]), "unsupported", ["w", "9 dimensions"])
    raw("size_mismatch.safetensors", {"w": t("F32", [2, 3], 0, 20)}, b"\0" * 20,
        subs=["w", "24 bytes", "span 20"])
    raw("size_mismatch_dtype.safetensors", {"w": t("F16", [4], 0, 16)}, b"\0" * 16,
        subs=["w", "8 bytes", "span 16"])
    raw("overlap.safetensors", {"a": t("F32", [2], 0, 8), "b": t("F32", [2], 4, 12)}, b"\0" * 12,
        subs=["b", "overlap", "'a'"])
    raw("same_span.safetensors", {"a": t("F32", [1], 0, 4), "b": t("F32", [1], 0, 4)}, b"\0" * 4,
        subs=["overlap"])
    raw("gap.safetensors", {"a": t("F32", [1], 0, 4), "b": t("F32", [1], 8, 12)}, b"\0" * 12,
        subs=["b", "gap"])
    raw("gap_at_start.safetensors", {"a": t("F32", [1], 4, 8)}, b"\0" * 8, subs=["a", "gap"])
    raw("trailing_bytes.safetensors", {"a": t("F32", [1], 0, 4)}, b"\0" * 9, subs=["trailing"])
    raw("span_past_eof.safetensors", {"a": t("F32", [2], 0, 8)}, b"\0" * 4, subs=["a", "past the data"])
    raw("begin_gt_end.safetensors", {"a": t("F32", [0], 8, 4)}, b"\0" * 8, subs=["a", "begin > end"])
    raw("offsets_three.safetensors", {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]}},
        b"\0" * 4, subs=["a", "data_offsets"])
    raw("offsets_negative.safetensors", {"a": t("F32", [0], -4, 0)}, b"", subs=["a", "data_offsets"])
    raw("offsets_float.safetensors", {"a": t("F32", [1], 0.0, 4)}, b"\0" * 4, subs=["a", "data_offsets"])
    raw("offsets_huge.safetensors", {"a": t("F32", [1], (1 << 63) - 4, (1 << 63) - 1)}, b"\0" * 4,
        subs=["a", "past the data"])
    raw("missing_offsets.safetensors", {"a": {"dtype": "F32", "shape": [1]}}, b"\0" * 4,
        subs=["a", "data_offsets"])
    raw("missing_dtype.safetensors", {"a": {"shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4,
        subs=["a", "dtype"])
    raw("unknown_field.safetensors", {"a": dict(t("F32", [1], 0, 4), extra=1)}, b"\0" * 4,
        subs=["a", "extra"])
    raw("entry_not_object.safetensors", {"a": [1, 2]}, b"", subs=["a", "object"])
    raw("metadata_int_value.safetensors", {"__metadata__": {"format": 1}}, b"",
        subs=["__metadata__", "format"])
    raw("metadata_null_value.safetensors", {"__metadata__": {"format": None}}, b"",
        subs=["__metadata__", "format"])
    raw("metadata_not_object.safetensors", {"__metadata__": ["pt"]}, b"", subs=["__metadata__"])

    # --- JSON corpus (fuzz seeds for mc_json_loadb / mc_hf_config_loadb) -------------------
    js = {
        "vit_config.json": json.dumps({"architectures": ["ViTForImageClassification"],
                                       "model_type": "vit", "hidden_size": 32, "layer_norm_eps": 1e-12,
                                       "id2label": {"0": "cat", "1": "dog"},
                                       "label2id": {"cat": 0, "dog": 1}}),
        "clip_config.json": json.dumps({"architectures": ["CLIPModel"], "model_type": "clip",
                                        "projection_dim": 512, "text_config": {"eos_token_id": 2},
                                        "vision_config": {"patch_size": 16}}),
        "mpnet_config.json": json.dumps({"architectures": ["MPNetForMaskedLM"], "model_type": "mpnet",
                                         "max_position_embeddings": 514, "layer_norm_eps": 1e-05}),
        "labels_gap.json": json.dumps({"architectures": ["ResNetForImageClassification"],
                                       "id2label": {"0": "a", "2": "c"}}),
        "labels_leading_zero.json": '{"architectures": ["ViTForImageClassification"], "id2label": {"0": "a", "01": "b"}}',
        "duplicate_key.json": '{"a": 1, "a": 2}',
        "malformed.json": '{"a": [1, 2,}',
        "not_object.json": "[1, 2]",
        "deep.json": "[" * 3000 + "]" * 3000,
        "big_int.json": '{"n": 123456789012345678901234567890}',
        "invalid_utf8.json": b'{"\xc3\x28": 1}',
        "nul.json": b'{"a": "x\\u0000y"}',
        "empty.json": "",
    }
    for name, text in js.items():
        with open(os.path.join(JSON_CORPUS, name), "wb") as f:
            f.write(text if isinstance(text, bytes) else text.encode())

    with open(os.path.join(HERE, "corpus_expect.tsv"), "w") as f:
        f.write("# file\tstatus\tsubstrings the message must contain (besides the file name)\n")
        for name, status, subs in sorted(expect):
            f.write("\t".join([name, status] + subs) + "\n")
    print(f"wrote {len(expect)} safetensors files and {len(js)} JSON files", file=sys.stderr)


if __name__ == "__main__":
    main()
