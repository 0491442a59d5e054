"""Where the jax engine keeps compiled programs between calls and between processes.

In memory: a bounded map from a program's key to its compiled executable. On disk, in the
user's cache folder: JAX's own persistent compilation cache (it saves XLA compiling) and,
beside it, the compiled executables themselves (they save tracing and lowering too, which
is most of the cost of a small graph once XLA's work is cached). The folder is trusted
as JAX's is: its files are loaded as code, so it is created private to the user.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

CACHE_ENV = "GRADCHECK_JAX_CACHE"  # a folder, or "off"; unset: the user's cache folder
CACHE_OFF = {"", "0", "off", "none", "false"}
MAX_IN_MEMORY = 256  # compiled programs kept per process (least recent out)
# marks a program that does not load back; not ".stays", which earlier versions wrote after an
# "afresh" compile that JAX had in fact loaded from its own cache (wrongly, for most programs)
STAYS = ".stays-afresh"

_COMPILED: OrderedDict = OrderedDict()  # a cache only: one key always gives the same program


def default_cache_dir() -> str | None:
    """$GRADCHECK_JAX_CACHE (a folder, or "off"), else `gradcheck/jax` in the platform's
    user cache folder."""
    setting = os.environ.get(CACHE_ENV)
    if setting is not None:
        return None if setting.strip().lower() in CACHE_OFF else setting
    return str(user_cache_root() / "gradcheck" / "jax")


def user_cache_root() -> Path:
    home = Path.home()
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
    if sys.platform == "darwin":
        return home / "Library" / "Caches"
    return Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache")


def use_persistent_cache(jax, cache_dir) -> None:
    """Point JAX's persistent compilation cache at `cache_dir` (None: off). Every program
    is worth keeping: a catalog's programs compile in well under JAX's default threshold."""
    folder = None if cache_dir is None else str(Path(cache_dir).expanduser())
    if jax.config.jax_compilation_cache_dir == folder:
        return
    from jax.experimental.compilation_cache import compilation_cache

    compilation_cache.reset_cache()  # jax initialises its cache once; start over
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def compiled_program(jax, key: str, compile_, args, device, cache_dir):
    """The executable for `key`: from memory, else from the cache folder, else
    `compile_()` (a `jax.stages.Compiled` taking `args`), which is then kept in both."""
    program = _COMPILED.pop(key, None)
    if program is None:
        store = None if cache_dir is None else ExecutableStore(jax, Path(cache_dir).expanduser())
        program = store.load(key, device) if store else None
        if program is None:
            program = _compiled_and_kept(jax, key, compile_, args, device, store)
    _COMPILED[key] = program
    while len(_COMPILED) > MAX_IN_MEMORY:
        _COMPILED.popitem(last=False)
    return program


def _compiled_and_kept(jax, key: str, compile_, args, device, store):
    """`compile_()`, written to the store; where the executable does not load back, compiled
    afresh and written; where that does not either, remembered as a program that does not
    travel, so that later runs neither write nor compile it twice."""
    program = compile_()
    if store is None or store.does_not_travel(key) or store.save(key, program, args, device):
        return program
    program = _compiled_afresh(jax, compile_)
    if not store.save(key, program, args, device):
        store.note_does_not_travel(key)
    return program


def _compiled_afresh(jax, compile_):
    """`compile_()` by XLA itself, not loaded from JAX's persistent cache: an executable that
    JAX loaded from its cache writes out without the kernels it shares with others and does
    not load back (the store's key changes with gradcheck's code, JAX's does not), so
    without this a program missing from the store would be traced again in every run."""
    from jax.experimental.compilation_cache import compilation_cache

    enabled = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    compilation_cache.reset_cache()  # jax decides once whether its cache is used, then keeps to it
    try:
        return compile_()
    finally:
        jax.config.update("jax_enable_compilation_cache", enabled)
        compilation_cache.reset_cache()


class ExecutableStore:
    """Serialized executables, one file per key (its hash), written atomically. A file
    that does not load (another jax version, a torn write) is a miss, never an error."""

    def __init__(self, jax, folder: Path):
        self.jax, self.folder = jax, folder / "executables"

    def load(self, key: str, device):
        from jax.experimental import serialize_executable

        try:
            blob, in_tree, out_tree = pickle.loads(self._path(key).read_bytes())
            return serialize_executable.deserialize_and_load(
                blob, in_tree, out_tree, backend=device.client, execution_devices=[device]
            )
        except Exception:  # noqa: BLE001 -- a missing or stale entry: compile instead
            return None

    def save(self, key: str, program, args, device) -> bool:
        """Keep `program` if it serializes and, loaded back, gives the same numbers on
        `args`: XLA CPU does not load every executable it wrote (a deduplicated kernel
        can go missing). Whether it loaded back."""
        from jax.experimental import serialize_executable

        try:
            data = pickle.dumps(serialize_executable.serialize(program))
            loaded = serialize_executable.deserialize_and_load(
                *pickle.loads(data), backend=device.client, execution_devices=[device]
            )
            if not _same_numbers(self.jax, loaded(*args), program(*args)):
                return False
        except Exception:  # noqa: BLE001 -- a program that does not travel still runs here
            return False
        self._write(key, data)
        return True

    def does_not_travel(self, key: str) -> bool:
        return self._path(key).with_suffix(STAYS).exists()

    def note_does_not_travel(self, key: str) -> None:
        self._write(key, b"", suffix=STAYS)

    def _write(self, key: str, data: bytes, suffix: str = ".pkl") -> None:
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=self.folder)
        except OSError:  # a folder we may not write: the program still ran
            return
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(temporary, self._path(key).with_suffix(suffix))  # whole file or none
        except OSError:
            os.unlink(temporary)

    def _path(self, key: str) -> Path:
        # what else shapes the code XLA wrote: its version and its flags (threads, say)
        versions = f"{self.jax.__version__}|{_jaxlib_version()}|{os.environ.get('XLA_FLAGS', '')}|"
        return self.folder / (hashlib.sha256((versions + key).encode()).hexdigest() + ".pkl")


def _jaxlib_version() -> str:
    import jaxlib

    return jaxlib.__version__


def _same_numbers(jax, a, b) -> bool:
    leaves_a, leaves_b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(leaves_a) == len(leaves_b) and all(
        np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True)
        for x, y in zip(leaves_a, leaves_b)
    )
