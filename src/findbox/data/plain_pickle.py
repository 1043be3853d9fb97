"""Reading an untrusted pickle (RefCOCO's `refs(unc).p`) without running anything it asks for.

A pickle is a program: GLOBAL / STACK_GLOBAL / INST / OBJ / EXT name a callable (`os.system`,
`subprocess.Popen`, ...) and REDUCE calls it. Every one of those goes through
`Unpickler.find_class`; refusing it there leaves only what pickle's own opcodes build without
naming a class: dict, list, tuple, str, int, float, bool, None, bytes (and set, frozenset,
bytearray). The one name allowed is `_codecs.encode`, and only as (str, "latin1"): Python 3
pickles bytes that way at protocols 0-2. That is all the refs files hold, so a real refs file loads and a hostile one is
refused before its first call.
"""

from __future__ import annotations

import pickle
from pathlib import Path

# Python 2 pickled RefCOCO's refs: its 8-bit str values decode as UTF-8 (ASCII would refuse
# the few non-ASCII sentences; 'bytes' would hand back bytes instead of text)
PY2_STR_ENCODING = "utf-8"


class RefusedPickle(ValueError):
    """The pickle asked for something other than plain containers and scalars."""


class _PlainUnpickler(pickle.Unpickler):
    def __init__(self, file, path: Path):
        super().__init__(file, encoding=PY2_STR_ENCODING)
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) == ("_codecs", "encode"):
            return _latin1_bytes  # how Python 3 pickles bytes at protocols 0-2
        raise RefusedPickle(
            f"{self.path}: refused: the pickle asks for {module}.{name}; expected only plain containers and "
            "scalars (dict, list, tuple, str, int, float, bool, None, bytes). Nothing in it was run."
        )

    def persistent_load(self, pid):
        raise RefusedPickle(f"{self.path}: refused: the pickle asks for a persistent object ({pid!r}); "
                            "expected only plain containers and scalars. Nothing in it was run.")


def _latin1_bytes(text, encoding):
    """What `_codecs.encode` does in a bytes object's pickle, and nothing else it could be asked for."""
    if not isinstance(text, str) or encoding != "latin1":
        raise RefusedPickle(f"refused: _codecs.encode({type(text).__name__}, {encoding!r}); expected only the "
                            "(str, 'latin1') of a pickled bytes object. Nothing in it was run.")
    return text.encode("latin1")


def load_plain_pickle(path: str | Path):
    """The object pickled in `path`, built from plain containers and scalars only.

    Raises RefusedPickle (a ValueError naming the file and what was asked for) for a pickle that names
    any class or function, and ValueError naming the file for one that is not a pickle or is cut short.
    """
    path = Path(path)
    with open(path, "rb") as f:
        try:
            return _PlainUnpickler(f, path).load()
        except RefusedPickle as exc:
            if not str(exc).startswith(str(path)):
                raise RefusedPickle(f"{path}: {exc}") from None
            raise
        except (pickle.UnpicklingError, EOFError, UnicodeDecodeError, ValueError, TypeError, IndexError,
                KeyError, AttributeError) as exc:
            raise ValueError(f"{path}: expected a pickle file, could not read it ({type(exc).__name__}: {exc})") from None
