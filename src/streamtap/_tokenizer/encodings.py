"""Where tiktoken encodings come from: streamtap's own copy, a directory, tiktoken's cache, the
network. Each source is tried at most once per process and encoding; nothing here runs at import.

The copy shipped with streamtap
-------------------------------
``cl100k_base`` and ``o200k_base`` are in the package (``_data/<name>.bpe.xz``), so exact counts
need no network and no configuration. A ``.tiktoken`` file lists every token as
``base64(token) rank``, ranks 0..n-1 in order; in both files ranks 0..255 are the single bytes
and every later token is the concatenation of two tokens of lower rank (BPE merges). So the
copy stores, after a header, the 256 single bytes in rank order and then, for every later
rank, the ranks of the two tokens it joins: 3 bytes each, written as byte planes (all low
bytes, then all middle bytes...), which xz compresses best of the layouts tried (see README,
"Exact counts offline"). On load the tokens are rebuilt, the exact bytes of the genuine
``.tiktoken`` file are rebuilt from them, and their SHA-256 must equal the one pinned in
tiktoken's own ``tiktoken_ext/openai_public.py``; only then is the rank dict used.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import tempfile
import threading
import types
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Final

logger = logging.getLogger("streamtap")

ENV_DIR: Final = "STREAMTAP_TIKTOKEN_DIR"
ENV_DOWNLOAD: Final = "STREAMTAP_TIKTOKEN_DOWNLOAD"
ENV_DOWNLOAD_TIMEOUT: Final = "STREAMTAP_TIKTOKEN_DOWNLOAD_TIMEOUT"
DEFAULT_DOWNLOAD_TIMEOUT: Final = 5.0

PACKAGED: Final = ("cl100k_base", "o200k_base")
_DATA: Final = Path(__file__).resolve().parent / "data"
_MAGIC: Final = b"streamtap-bpe 1\n"

# Used only if tiktoken's constructor does not pass a hash (it always has so far).
_FALLBACK_SHA256: Final = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}

# Per thread: `local.checkpoint()` is called before each step of a load that holds the GIL for
# long (building the rank dict: tens of ms; tiktoken's encoder, in Rust: about 0.2 s).
# `_pending`'s loader waits there for the streams in flight to end.
local = threading.local()


def _checkpoint() -> None:
    step = getattr(local, "checkpoint", None)
    if step is not None:
        step()


_registry_lock = threading.Lock()
_name_locks: dict[str, threading.Lock] = {}
loaded: dict[str, Any] = {}  # encoding name -> tiktoken.Encoding
_attempts: dict[tuple[str, str, str], str] = {}  # (encoding, source, where) -> why it failed
_warned: set[tuple[str, str]] = set()


def warn_once(key: tuple[str, str], msg: str, *args: object) -> None:
    with _registry_lock:
        if key in _warned:
            return
        _warned.add(key)
    logger.warning(msg, *args)


class _Unavailable(Exception):
    """A source does not have the file (not an error worth a traceback)."""


# --------------------------------------------------------------------------------------------
# Loading, source by source
# --------------------------------------------------------------------------------------------


def load_encoding(name: str, tiktoken_dir: str | os.PathLike[str] | None) -> Any:
    """The tiktoken Encoding ``name``, or None (after one warning per encoding). Blocks while
    it loads; one load per encoding at a time, at most one try per source."""
    enc = loaded.get(name)
    if enc is not None:
        return enc
    with _registry_lock:
        lock = _name_locks.setdefault(name, threading.Lock())
    with lock:
        enc = loaded.get(name)
        if enc is not None:
            return enc
        known = _known_encodings()
        if name not in known:
            warn_once(
                ("encoding", name),
                "streamtap: unknown encoding %r (known: %s); token counts are estimates",
                name,
                ", ".join(known),
            )
            return None
        for kind, where, build in _sources(name, tiktoken_dir):
            key = (name, kind, where)
            if key in _attempts:
                continue
            try:
                enc = build()
            except _Unavailable as exc:
                _attempts[key] = str(exc)
                continue
            except Exception as exc:
                _attempts[key] = f"{type(exc).__name__}: {exc}"
                continue
            loaded[name] = enc
            _warn_if_override_failed(name, kind)
            return enc
        reasons = [
            f"{kind}{f' {where}' if where else ''}: {why}"
            for (n, kind, where), why in _attempts.items()
            if n == name
        ]
    warn_once(("encoding", name), "%s", _unavailable_message(name, reasons))
    return None


def _warn_if_override_failed(name: str, used: str) -> None:
    """A directory the user pointed at did not work: say so, even though another source did."""
    for (n, kind, where), why in list(_attempts.items()):
        if n == name and kind in ("tiktoken_dir", ENV_DIR):
            warn_once(
                ("override", name),
                "streamtap: %s %s: %s; using %s of %s instead",
                kind,
                where,
                why,
                used,
                name,
            )
            return


def _download_allowed() -> bool:
    return os.environ.get(ENV_DOWNLOAD, "1").strip() != "0"


def _sources(
    name: str, tiktoken_dir: str | os.PathLike[str] | None
) -> list[tuple[str, str, Callable[[], Any]]]:
    """(kind, where, build) in the order they are tried: the user's overrides first."""
    sources: list[tuple[str, str, Callable[[], Any]]] = []
    if tiktoken_dir is not None:
        option_dir = os.fspath(tiktoken_dir)
        sources.append(("tiktoken_dir", option_dir, partial(_build_from_dir, name, option_dir)))
    env_dir = os.environ.get(ENV_DIR)
    if env_dir:
        sources.append((ENV_DIR, env_dir, partial(_build_from_dir, name, env_dir)))
    sources.append(("streamtap's copy", "", partial(_construct, name, _packaged_ranks)))
    cache_dir = _tiktoken_cache_dir()
    if cache_dir:
        sources.append(("tiktoken cache", cache_dir, partial(_build_from_cache, name, cache_dir)))
    if _download_allowed():
        sources.append(("download", "", partial(_download, name)))
    return sources


def _unavailable_message(name: str, reasons: list[str]) -> str:
    """Why no source had ``name``, and the one fix that applies."""
    if name in PACKAGED:
        # streamtap's own copy failed: that is the cause, whatever else was tried.
        hint = (
            "streamtap's bundled copy could not be used (see above: a damaged install? "
            "reinstall streamtap), and no other source had it"
        )
    else:
        hint = (
            f"streamtap bundles only {' and '.join(PACKAGED)}; point tiktoken_dir= or "
            f"${ENV_DIR} at a directory holding {name}.tiktoken"
        )
        if not _download_allowed():
            hint += f", or allow the download ({ENV_DOWNLOAD}=0 is set in this environment)"
    return (
        f"streamtap: tiktoken encoding {name} is not available"
        f" ({'; '.join(reasons) or 'no source'}); token counts are estimates. {hint}"
    )


def _known_encodings() -> list[str]:
    """The encodings tiktoken's OpenAI plugin can construct (imported lazily)."""
    import importlib

    public = importlib.import_module("tiktoken_ext.openai_public")
    return sorted(public.ENCODING_CONSTRUCTORS)


def _tiktoken_cache_dir() -> str:
    """tiktoken's cache directory, the way ``tiktoken.load.read_file_cached`` chooses it."""
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        return os.environ["TIKTOKEN_CACHE_DIR"]
    if "DATA_GYM_CACHE_DIR" in os.environ:
        return os.environ["DATA_GYM_CACHE_DIR"]
    return os.path.join(tempfile.gettempdir(), "data-gym-cache")


def _build_from_dir(name: str, directory: str) -> Any:
    path = Path(directory) / f"{name}.tiktoken"
    if not path.is_file():
        raise _Unavailable(f"no file {path}")
    return _construct(name, partial(_file_ranks, lambda url: str(path)))


def _build_from_cache(name: str, cache_dir: str) -> Any:
    def locate(url: str) -> str:
        path = os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest())
        if not os.path.isfile(path):
            raise _Unavailable(f"not cached ({path})")
        return path

    return _construct(name, partial(_file_ranks, locate))


def _construct(name: str, read: Callable[[str, str], dict[bytes, int]]) -> Any:
    """Build ``tiktoken.Encoding(name)`` from tiktoken's own constructor (pattern, special
    tokens, pinned SHA-256), with the ranks from ``read(url, pinned_sha256)`` instead of the URL.

    The constructor is run as a copy whose globals map ``load_tiktoken_bpe`` to our reader: no
    global state is patched, so this is safe next to other threads using tiktoken.
    """
    import importlib

    import tiktoken

    public = importlib.import_module("tiktoken_ext.openai_public")
    constructors: dict[str, Callable[[], dict[str, Any]]] = public.ENCODING_CONSTRUCTORS
    if name not in constructors:
        raise _Unavailable(f"unknown encoding (known: {', '.join(sorted(constructors))})")
    used: list[str] = []

    def read_ranks(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        expected = expected_hash or _FALLBACK_SHA256.get(name)
        if not expected:
            raise _Unavailable(f"no pinned SHA-256 for {url}")
        used.append(url)
        return read(url, expected)

    def refuse(*args: object, **kwargs: object) -> Any:
        raise _Unavailable("this encoding is not loaded from .tiktoken files")

    namespace = dict(vars(public))
    namespace["load_tiktoken_bpe"] = read_ranks
    namespace["data_gym_to_mergeable_bpe_ranks"] = refuse
    for attr, value in list(namespace.items()):
        if isinstance(value, types.FunctionType) and value.__globals__ is vars(public):
            namespace[attr] = _rebind(value, namespace)
    ctor = constructors[name]
    if not isinstance(ctor, types.FunctionType) or "load_tiktoken_bpe" not in _names_used(
        ctor, vars(public)
    ):
        raise _Unavailable("tiktoken's constructor has an unexpected shape")
    kwargs = _rebind(ctor, namespace)()
    if not used:  # pragma: no cover - guarded by _names_used
        raise _Unavailable("tiktoken's constructor did not read a ranks file")
    _checkpoint()
    return tiktoken.Encoding(**kwargs)


def _rebind(fn: types.FunctionType, namespace: dict[str, Any]) -> types.FunctionType:
    new = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)
    new.__kwdefaults__ = fn.__kwdefaults__
    return new


def _names_used(fn: types.FunctionType, module_vars: dict[str, Any], depth: int = 0) -> set[str]:
    """Global names a constructor uses, following calls to other constructors of the module."""
    names = set(fn.__code__.co_names)
    if depth < 3:
        for n in list(names):
            other = module_vars.get(n)
            if isinstance(other, types.FunctionType) and other.__globals__ is module_vars:
                names |= _names_used(other, module_vars, depth + 1)
    return names


def _file_ranks(locate: Callable[[str], str], url: str, expected: str) -> dict[bytes, int]:
    return read_ranks_file(locate(url), expected)


def read_ranks_file(path: str, expected_sha256: str) -> dict[bytes, int]:
    """``tiktoken.load.load_tiktoken_bpe(path, expected_hash)``, minus its cache side effect.

    For a local path, tiktoken's loader also writes a copy of the file into its cache directory
    (and raises if a user-set cache directory is not writable). We run its parser with a reader
    that only reads the file and checks the SHA-256 (tiktoken's ``check_hash``).
    """
    import tiktoken.load as tl

    def read_verified(blobpath: str, expected_hash: str | None = None) -> bytes:
        with open(blobpath, "rb") as f:
            data = f.read()
        if not tl.check_hash(data, expected_sha256):
            raise ValueError(f"SHA-256 mismatch for {blobpath} (expected {expected_sha256})")
        return data

    loader = tl.load_tiktoken_bpe
    if isinstance(loader, types.FunctionType) and "read_file_cached" in loader.__code__.co_names:
        namespace = dict(vars(tl))
        namespace["read_file_cached"] = read_verified
        ranks: dict[bytes, int] = _rebind(loader, namespace)(path, expected_sha256)
        return ranks
    fallback: dict[bytes, int] = loader(path, expected_hash=expected_sha256)  # pragma: no cover
    return fallback  # pragma: no cover


def _download(name: str) -> Any:
    """``tiktoken.get_encoding`` (network), in a daemon thread, bounded in time."""
    import tiktoken

    try:
        timeout = float(os.environ.get(ENV_DOWNLOAD_TIMEOUT, DEFAULT_DOWNLOAD_TIMEOUT))
    except ValueError:
        timeout = DEFAULT_DOWNLOAD_TIMEOUT
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(tiktoken.get_encoding(name))
        except BaseException as exc:  # reported below
            result.append(exc)

    thread = threading.Thread(target=run, name=f"streamtap-tiktoken-{name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if not result:
        raise _Unavailable(f"download did not finish within {timeout:g}s")
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


# --------------------------------------------------------------------------------------------
# The bundled copy
# --------------------------------------------------------------------------------------------


def _packaged_ranks(url: str, expected_sha256: str) -> dict[bytes, int]:
    """The ranks of the ``.tiktoken`` file at ``url``, from streamtap's copy, verified."""
    name = url.rsplit("/", 1)[-1].removesuffix(".tiktoken")
    if name not in PACKAGED:
        raise _Unavailable(f"streamtap bundles only {', '.join(PACKAGED)}")
    try:
        import lzma
    except ImportError as exc:  # a Python built without liblzma
        raise _Unavailable(f"this Python has no lzma module ({exc})") from None
    tokens = unpack(lzma.decompress((_DATA / f"{name}.bpe.xz").read_bytes()))
    digest = hashlib.sha256(tiktoken_file_bytes(tokens)).hexdigest()
    if digest != expected_sha256:
        raise ValueError(
            f"SHA-256 mismatch for streamtap's {name} ({digest}, tiktoken pins {expected_sha256})"
        )
    _checkpoint()
    return dict(zip(tokens, range(len(tokens))))


def tiktoken_file_bytes(tokens: list[bytes]) -> bytes:
    """The ``.tiktoken`` file of ``tokens`` (rank = position), byte for byte."""
    import base64

    b64 = base64.b64encode
    return b"".join([b"%s %d\n" % (b64(t), i) for i, t in enumerate(tokens)])


def pack(tokens: list[bytes]) -> bytes:
    """The payload stored (xz-compressed) for ``tokens``: see the module docstring."""
    if [len(t) for t in tokens[:256]] != [1] * 256:
        raise ValueError("ranks 0..255 must be the single bytes")
    rank = {t: i for i, t in enumerate(tokens)}
    left: list[int] = []
    right: list[int] = []
    for i in range(256, len(tokens)):
        t = tokens[i]
        # Any split into two lower ranks rebuilds the token; take the earliest merge.
        splits = [
            (max(a, b), a, b)
            for k in range(1, len(t))
            for a, b in [(rank.get(t[:k], i), rank.get(t[k:], i))]
            if a < i and b < i
        ]
        if not splits:
            raise ValueError(f"rank {i} is not the merge of two lower ranks")
        _, a, b = min(splits)
        left.append(a)
        right.append(b)
    planes = [bytes((r >> s) & 0xFF for r in ranks) for ranks in (left, right) for s in (0, 8, 16)]
    head = _MAGIC + len(tokens).to_bytes(4, "little") + b"".join(tokens[:256])
    return head + b"".join(planes)


def unpack(payload: bytes) -> list[bytes]:
    """The tokens, in rank order, of a payload made by :func:`pack`."""
    from array import array

    if not payload.startswith(_MAGIC):
        raise ValueError("not a streamtap BPE payload")
    pos = len(_MAGIC)
    n = int.from_bytes(payload[pos : pos + 4], "little")
    pos += 4
    tokens = [payload[pos + i : pos + i + 1] for i in range(256)]
    pos += 256
    m = n - 256
    if len(payload) != pos + 6 * m:
        raise ValueError("truncated streamtap BPE payload")
    pairs = []
    for side in range(2):
        buf = bytearray(4 * m)  # the three planes back into little-endian 32-bit integers
        for s in range(3):
            start = pos + (3 * side + s) * m
            buf[s::4] = payload[start : start + m]
        ranks = array(_UINT32, bytes(buf))
        if sys.byteorder == "big":  # pragma: no cover
            ranks.byteswap()
        pairs.append(ranks)
    append = tokens.append
    for a, b in zip(*pairs):
        append(tokens[a] + tokens[b])
    return tokens


_UINT32: Final = next(code for code in "IL" if __import__("array").array(code).itemsize == 4)


def reset_for_tests(*, forget_loaded: bool = True) -> None:
    """Forget failed attempts and warnings (and, by default, loaded encodings)."""
    with _registry_lock:
        if forget_loaded:
            loaded.clear()
        _attempts.clear()
        _warned.clear()
