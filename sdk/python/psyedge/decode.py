"""llama.cpp's low-level API, wrapped for jump-forward decoding (see DECODING.md).

`Engine` owns one model and one context and offers exactly what the Screener needs: tokenize,
decode a token batch on a sequence at given positions with logits only where asked, cut / copy
sequences, and save / restore one sequence's KV state. It goes through `llama_cpp.llama_cpp`
(ctypes on llama.h), not the high-level `Llama` class, to avoid its per-context buffers and to
set the context parameters jump-forward needs (unified KV for cheap sequence copies, full
sliding-window cache so the cache can be cut at any position, flash attention).

An adapter GGUF (`convert.lora_gguf`) can ride on the model: llama.cpp then computes each adapted
weight as `W x + scale * B (A x)` with W in the base file's own type, so a 4-bit base does not
round the fine-tune away; its psyedge.* keys are read before the base's.

`choose` turns the logits at a value position into the value and the per-value probabilities.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from psyedge.errors import ModelError

log = logging.getLogger(__name__)

_BACKEND_READY = False


def _llama():  # type: ignore[no-untyped-def]
    """Import llama.cpp's bindings on first use (the contract modules never need them)."""
    global _BACKEND_READY
    try:
        import llama_cpp.llama_cpp as ll
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ModelError(f"llama-cpp-python is not importable ({exc}); install it: pip install "
                         "'llama-cpp-python>=0.3.36,<0.4'") from None
    if not _BACKEND_READY:
        ll.llama_backend_init()
        _BACKEND_READY = True
    return ll


def default_threads() -> int:
    """All cores up to 4: beyond that a small model's decode is memory-bound and gains little."""
    return max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class EngineConfig:
    """Context settings. `n_seq_max` covers sequence 0 plus the scratch sequences of scoring."""

    n_ctx: int = 4096
    n_threads: int = 0  # 0: default_threads()
    flash_attn: bool = True
    n_seq_max: int = 11
    n_ubatch: int = 512


class Engine:
    """One llama.cpp model + context. Not thread-safe: use one Engine per thread."""

    def __init__(self, path: str | Path, config: EngineConfig = EngineConfig(),
                 verbose: bool = False, adapter: str | Path | None = None) -> None:
        ll = _llama()
        self._ll = ll
        self.path = Path(path)
        self.adapter_path = Path(adapter) if adapter is not None else None
        self._adapter = None
        if not verbose:
            # llama-cpp-python routes llama.cpp's log through this logger; only errors by default.
            lg = logging.getLogger("llama-cpp-python")
            if lg.level == logging.NOTSET:
                lg.setLevel(logging.ERROR)
        if not self.path.is_file():
            raise ModelError(f"model file not found: {self.path} (pass the path of a .gguf file)")
        mparams = ll.llama_model_default_params()
        mparams.n_gpu_layers = 0
        self._model = ll.llama_model_load_from_file(str(self.path).encode("utf-8"), mparams)
        if not self._model:
            raise ModelError(f"llama.cpp could not load {self.path}: not a GGUF model it supports "
                             "(check the file is complete and its architecture is supported)")
        self._ctx = None
        self._batch = None
        self.vocab = ll.llama_model_get_vocab(self._model)
        self.n_vocab = ll.llama_vocab_n_tokens(self.vocab)
        threads = config.n_threads or default_threads()
        cparams = ll.llama_context_default_params()
        cparams.n_ctx = config.n_ctx
        cparams.n_batch = config.n_ctx  # a whole segment per llama_decode call
        cparams.n_ubatch = min(config.n_ubatch, config.n_ctx)
        cparams.n_seq_max = config.n_seq_max
        cparams.n_threads = threads
        cparams.n_threads_batch = threads
        cparams.kv_unified = True
        cparams.swa_full = True
        cparams.no_perf = True
        cparams.flash_attn_type = (ll.LLAMA_FLASH_ATTN_TYPE_ENABLED if config.flash_attn
                                   else ll.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        ctx = ll.llama_init_from_model(self._model, cparams)
        if not ctx and config.flash_attn:
            log.warning("flash attention unavailable for %s; using the default attention", self.path.name)
            cparams.flash_attn_type = ll.LLAMA_FLASH_ATTN_TYPE_AUTO
            ctx = ll.llama_init_from_model(self._model, cparams)
        if not ctx:
            self.close()
            raise ModelError(f"llama.cpp could not create a context for {self.path} with "
                             f"n_ctx={config.n_ctx}; try a smaller n_ctx")
        self._ctx = ctx
        if self.adapter_path is not None:
            self._attach_adapter(self.adapter_path)
        self.config = config
        self.n_threads = threads
        # llama.cpp may round the context up (to a multiple of 256); a batch beyond n_batch aborts
        # the process, so the usable context is the smaller of the two (DECODING.md 1).
        self.n_ctx = min(ll.llama_n_ctx(ctx), ll.llama_n_batch(ctx))
        self._mem = ll.llama_get_memory(ctx)
        self._batch = ll.llama_batch_init(self.n_ctx, 0, config.n_seq_max)
        self.decode_calls = 0

    def _attach_adapter(self, path: Path) -> None:
        """Load a LoRA adapter GGUF onto the model and apply it at scale 1 on the context."""
        ll = self._ll
        if not path.is_file():
            self.close()
            raise ModelError(f"adapter file not found: {path} (make lora-gguf writes it)")
        adapter = ll.llama_adapter_lora_init(self._model, str(path).encode("utf-8"))
        if not adapter:
            self.close()
            raise ModelError(f"llama.cpp could not load the adapter {path} onto {self.path.name}: not "
                             "a LoRA adapter GGUF, or made for another base (architecture, shapes)")
        self._adapter = adapter
        arr = (ll.llama_adapter_lora_p_ctypes * 1)(adapter)
        if ll.llama_set_adapters_lora(self._ctx, arr, 1, (ctypes.c_float * 1)(1.0)) != 0:
            self.close()
            raise ModelError(f"llama.cpp could not apply the adapter {path}")

    # ---- model facts ---------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        """A GGUF metadata value as text (the adapter's first), or None when the key is absent."""
        if self._adapter:
            value = self._meta_of(self._ll.llama_adapter_meta_val_str, self._adapter, key)
            if value is not None:
                return value
        return self._meta_of(self._ll.llama_model_meta_val_str, self._model, key)

    @staticmethod
    def _meta_of(read: Callable[..., int], obj: object, key: str) -> str | None:
        buf = ctypes.create_string_buffer(4096)
        n = read(obj, key.encode("utf-8"), buf, len(buf))
        if n < 0:
            return None
        if n >= len(buf):
            buf = ctypes.create_string_buffer(n + 1)
            read(obj, key.encode("utf-8"), buf, len(buf))
        return buf.value.decode("utf-8", errors="replace")

    @property
    def add_bos(self) -> bool:
        return bool(self._ll.llama_vocab_get_add_bos(self.vocab))

    @property
    def bos(self) -> int:
        return int(self._ll.llama_vocab_bos(self.vocab))

    # ---- text <-> tokens -----------------------------------------------------------------
    def tokenize(self, text: str, special: bool) -> list[int]:
        """Tokens of `text` with no BOS/EOS added; `special` parses control-token text."""
        data = text.encode("utf-8")
        cap = len(data) + 8
        buf = (ctypes.c_int32 * cap)()
        n = self._ll.llama_tokenize(self.vocab, data, len(data), buf, cap, False, special)
        if n < 0:  # buffer too small: -n is the size needed
            cap = -n
            buf = (ctypes.c_int32 * cap)()
            n = self._ll.llama_tokenize(self.vocab, data, len(data), buf, cap, False, special)
        if n < 0:
            raise ModelError(f"tokenization failed for {text[:60]!r} ({n})")
        return list(buf[:n])

    def piece(self, token: int, special: bool = False) -> bytes:
        """The bytes one token stands for (control tokens render empty unless `special`)."""
        buf = ctypes.create_string_buffer(64)
        n = self._ll.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self._ll.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        return buf.raw[:n]

    # ---- decoding ------------------------------------------------------------------------
    def decode(self, rows: Sequence[tuple[int, int, int, bool]]) -> list[np.ndarray]:
        """One `llama_decode` call over `rows` of (token, position, sequence, wants_logits).

        Returns the logits (float32 arrays of n_vocab, copied) of the rows that asked for them,
        in row order. Raises `ModelError` when llama.cpp refuses the batch.
        """
        ll = self._ll
        n = len(rows)
        if n == 0:
            return []
        if n > self.n_ctx:
            raise ModelError(f"batch of {n} tokens exceeds the context of {self.n_ctx}")
        b = self._batch
        outputs = []
        for i, (tok, pos, seq, want) in enumerate(rows):
            b.token[i] = tok
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq
            b.logits[i] = 1 if want else 0
            if want:
                outputs.append(i)
        b.n_tokens = n
        rc = ll.llama_decode(self._ctx, b)
        self.decode_calls += 1
        if rc != 0:
            raise ModelError(f"llama_decode failed with code {rc} on a batch of {n} tokens "
                             f"(positions {rows[0][1]}..{rows[-1][1]}, context {self.n_ctx})")
        out = []
        for i in outputs:
            ptr = ll.llama_get_logits_ith(self._ctx, i)
            out.append(np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy())
        return out

    def decode_seq(self, tokens: Sequence[int], start: int, seq: int = 0,
                   logits: str = "last") -> list[np.ndarray]:
        """Decode `tokens` on `seq` from position `start`; logits at the `last` token, `all`, or `none`."""
        last = len(tokens) - 1
        rows = [(t, start + i, seq, logits == "all" or (logits == "last" and i == last))
                for i, t in enumerate(tokens)]
        return self.decode(rows)

    # ---- KV cache ------------------------------------------------------------------------
    def seq_rm(self, seq: int, p0: int, p1: int = -1) -> bool:
        """Remove positions [p0, p1) of `seq` (-1: to the end); False if the cache cannot cut there."""
        return bool(self._ll.llama_memory_seq_rm(self._mem, seq, p0, p1))

    def seq_cp(self, src: int, dst: int, p0: int = -1, p1: int = -1) -> None:
        """Make `dst` share `src`'s cached positions [p0, p1) (metadata only with a unified cache)."""
        self._ll.llama_memory_seq_cp(self._mem, src, dst, p0, p1)

    def clear(self) -> None:
        self._ll.llama_memory_clear(self._mem, True)

    def state_get(self, seq: int = 0) -> ctypes.Array:
        """A copy of one sequence's KV state (`llama_state_seq_get_data`)."""
        size = self._ll.llama_state_seq_get_size(self._ctx, seq)
        buf = (ctypes.c_uint8 * size)()
        got = self._ll.llama_state_seq_get_data(self._ctx, buf, size, seq)
        if got != size:
            raise ModelError(f"llama_state_seq_get_data copied {got} of {size} bytes")
        return buf

    def state_set(self, buf: ctypes.Array, seq: int = 0) -> None:
        """Restore a sequence saved by `state_get` into `seq` (which must be empty)."""
        if self._ll.llama_state_seq_set_data(self._ctx, buf, len(buf), seq) == 0:
            raise ModelError("llama_state_seq_set_data failed to restore the instruction prefix")

    # ---- lifetime ------------------------------------------------------------------------
    def close(self) -> None:
        """Free the batch, context and model (idempotent; also run at garbage collection)."""
        ll = getattr(self, "_ll", None)
        if ll is None:
            return
        if getattr(self, "_batch", None) is not None:
            ll.llama_batch_free(self._batch)
            self._batch = None
        if getattr(self, "_ctx", None):
            ll.llama_free(self._ctx)
            self._ctx = None
        if getattr(self, "_adapter", None):
            ll.llama_adapter_lora_free(self._adapter)
            self._adapter = None
        if getattr(self, "_model", None):
            ll.llama_model_free(self._model)
            self._model = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown may have torn down ctypes
            self.close()


# ---- choosing a value -------------------------------------------------------------------------
LogitsAt = Callable[[int, int], np.ndarray]
"""(candidate index, depth) -> logits after the candidate's first `depth` tokens."""


def shared_first(cands: Sequence[Sequence[int]]) -> list[int]:
    """Indices of candidates whose first token another candidate also starts with."""
    firsts = [c[0] for c in cands]
    return [i for i, f in enumerate(firsts) if firsts.count(f) > 1]


def choose(cands: Sequence[Sequence[int]], logits_at: LogitsAt) -> tuple[int, list[float]]:
    """Pick a value: the argmax of each candidate's probability over the token trie.

    At every trie node with several children the logits there are softmaxed over the children's
    tokens only (renormalised); a candidate's probability is the product along its path. With
    distinct first tokens this is the renormalised first-token probability (DECODING.md 4).
    Returns (chosen index, probabilities in candidate order); ties go to the earlier candidate.
    """
    probs = []
    for i, toks in enumerate(cands):
        p = 1.0
        for d in range(len(toks)):
            prefix = tuple(toks[:d])
            children = sorted({tuple(c[: d + 1])[-1] for c in cands
                               if len(c) > d and tuple(c[:d]) == prefix})
            if len(children) < 2:
                continue
            lc = logits_at(i, d)[children].astype(np.float64)  # index first: vocabularies reach 262k
            e = np.exp(lc - lc.max())
            p *= float(e[children.index(toks[d])] / e.sum())
        probs.append(p)
    total = sum(probs)
    probs = [p / total for p in probs]
    best = max(range(len(probs)), key=lambda i: (probs[i], -i))
    return best, probs
