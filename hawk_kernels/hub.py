"""Model and head directories given as a local path or a Hugging Face Hub repository id ("org/name").

A local directory always wins. A name that is not one, and is shaped like a repository id, is fetched with
huggingface_hub's `snapshot_download` into its cache (HF_HOME / HF_HUB_CACHE; a login for gated repositories:
`huggingface-cli login` or HF_TOKEN), as transformers' `from_pretrained` does; with HF_HUB_OFFLINE=1, or without a
network, the cached snapshot is used. What is fetched: configurations, tokenizer and processor files, safetensors
weights, and checkpoint files of the pixel decoders (`vqgan.ckpt`) - never a second copy of the weights in
`.bin` / `.pt` form. Everything after this reads the returned directory offline, as before.
"""
from __future__ import annotations

import re
from pathlib import Path

# what a model or heads directory is read from (pipelines/__init__.py, heads.py, pipelines/lumina.py)
FETCHED_FILES = ("*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.jinja", "*.ckpt", "*.yaml")
# hidden files and folders (Lumina-mGPT-7B-512 holds a notebook's .ipynb_checkpoints/config-checkpoint.json)
SKIPPED_FILES = (".*",)
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}")  # huggingface_hub.utils.validate_repo_id's shape


def is_repo_id(name) -> bool:
    """Whether `name` is shaped like a Hub repository id ("org/name"): one slash, no "..", "--" or leading dot."""
    return (isinstance(name, str) and _REPO_ID.fullmatch(name) is not None and ".." not in name
            and "--" not in name and not name.endswith(".git"))


def local_dir(name: str, path, required: str | tuple[str, ...], revision: str | None = None) -> Path:
    """The directory `path` names, holding `required` (a file name, or a tuple of alternatives): `path` itself when
    it is a local directory, else the Hub snapshot of the repository `path` at `revision` (None: its default
    branch). Errors name the argument `name`: FileNotFoundError for a path that is neither, or a snapshot without
    `required`; ValueError for a repository the Hub refused (not found, gated, a revision that does not exist)."""
    alternatives = (required,) if isinstance(required, str) else tuple(required)
    required = " or ".join(alternatives)
    if not isinstance(path, (str, Path)):
        raise TypeError(f"{name}: expected a directory path or a Hugging Face Hub repository id, got "
                        f"{type(path).__name__}")
    if revision is not None and not (isinstance(revision, str) and revision):
        raise TypeError(f"revision: expected None or a branch, tag or commit of the Hub repository, got {revision!r}")
    local = Path(path)
    if local.is_dir() or not is_repo_id(str(path)):
        if revision is not None:
            raise ValueError(f"revision: given, but {name} {str(path)!r} is a local directory, not a Hub repository")
        if not any((local / file).is_file() for file in alternatives):
            raise FileNotFoundError(f"{name}: expected a directory holding {required}, or a Hugging Face Hub "
                                    f"repository id (org/name), got {str(path)!r}")
        return local
    snapshot = Path(_snapshot(name, str(path), revision))
    if not any((snapshot / file).is_file() for file in alternatives):
        raise FileNotFoundError(f"{name}: the Hub repository {path!r} has no {required} (fetched into "
                                f"{str(snapshot)!r}): not a checkpoint in transformers' layout")
    return snapshot


def _snapshot(name: str, repo_id: str, revision: str | None) -> str:
    """snapshot_download of FETCHED_FILES; the Hub's refusals as errors naming `name`."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    where = f"{name}: {repo_id!r} is not a local directory, and as a Hugging Face Hub repository id"
    try:
        # offline: the cache alone (given a commit as revision, huggingface_hub 1.x would still list the repository
        # online and fail with OfflineModeIsEnabled instead of reading the cached snapshot)
        return snapshot_download(repo_id, revision=revision, allow_patterns=list(FETCHED_FILES),
                                 ignore_patterns=list(SKIPPED_FILES), local_files_only=bool(constants.HF_HUB_OFFLINE))
    except GatedRepoError:  # before RepositoryNotFoundError: it is one
        raise ValueError(f"{where} it is gated: accept its terms on huggingface.co, then `huggingface-cli login` "
                         f"(or set HF_TOKEN)") from None
    except RepositoryNotFoundError:
        raise ValueError(f"{where} it does not exist (or is private: `huggingface-cli login`)") from None
    except RevisionNotFoundError:
        raise ValueError(f"revision: {revision!r} is not a branch, tag or commit of {repo_id!r}") from None
    except (LocalEntryNotFoundError, ConnectionError):  # ConnectionError: OfflineModeIsEnabled, a refused socket
        raise FileNotFoundError(f"{where} it is not in the local cache, and the Hub cannot be reached (offline, or "
                                f"HF_HUB_OFFLINE=1): download it where there is a network (`huggingface-cli download "
                                f"{repo_id}`), or give a local directory") from None
    except HfHubHTTPError as exc:
        raise ValueError(f"{where} the Hub refused it: {str(exc).splitlines()[0]}") from None
