"""Errors a user can act on. The CLI prints their message and exits non-zero, nothing else."""


class HsrError(Exception):
    """Base class: the message alone must tell the user what went wrong and what to do."""


class ConfigError(HsrError, ValueError):
    """Bad hyperparameters or options."""


class JudgeError(HsrError, ValueError):
    """A judge could not be built or run; the message says which and why."""


class ModelLoadError(HsrError, RuntimeError):
    """A model could not be loaded; the message says what to do about it."""


def describe_os_error(exc: OSError) -> str:
    """One line for an operating-system error no check caught (a disk filling up mid-write, a symlink
    loop, a permission flip): what happened, to which path, and what to do."""
    import errno

    paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
    what = exc.strerror or str(exc) or type(exc).__name__
    hint = {
        errno.ENOSPC: "free some space or choose another --out; nothing half-written was kept",
        errno.EFBIG: "a file size limit (ulimit -f) or the file system refuses a file this large; nothing "
        "half-written was kept",
        errno.EDQUOT: "free some space or choose another --out; nothing half-written was kept",
        errno.ELOOP: "a symbolic link there points back at itself; fix or remove it",
        errno.EACCES: "check the permissions, or choose another path",
        errno.EPERM: "check the permissions, or choose another path",
        errno.EROFS: "the file system is read-only; choose another path",
        errno.ENAMETOOLONG: "choose a shorter path",
    }.get(exc.errno or 0)
    line = f"{what}: {paths}" if paths else what
    return f"{line} ({hint})." if hint else f"{line}."
