"""The `nucgen` command: one entry point, one subcommand per job.

Each subcommand is a module of `nucgen_tf.commands` with an absl `main(argv)` and
`define_flags()`; only the chosen module is imported, so absl flags of different jobs never
clash and `nucgen --help` is fast. `python -m nucgen_tf.commands.<module>` runs the same job.

TensorFlow's start-up lines (oneDNN, CPU features, absl's InitializeLog warning) are hidden:
`TF_CPP_MIN_LOG_LEVEL=2` unless set, and TensorFlow's native stderr captured while it is
imported (some of those lines ignore the variable). `NUCGEN_TF_LOGS=1`, or any
`TF_CPP_MIN_LOG_LEVEL` of your own, shows them again. Errors a command does not turn into a
message itself (a bad file, Ctrl-C) end in one line, not a traceback.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import tempfile
from collections.abc import Iterator, MutableMapping

from absl import app

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "preview": (
        "nucgen_tf.commands.preview",
        "render the paper's representations of a data folder (or a built-in example)",
    ),
    "fetch": ("nucgen_tf.commands.fetch", "download and convert BBBC039 into images/ + masks/ splits"),
    "phantom3d": (
        "nucgen_tf.commands.phantom3d",
        "write the simulated BBBC024-like 3D set (high/low SNR; a stand-in, not BBBC024)",
    ),
    "synthesize": (
        "nucgen_tf.commands.synthesize",
        "generate image + instance-mask pairs from three exported generators",
    ),
    "paint": ("nucgen_tf.commands.paint", "paint your own instance masks with the stage-3 generator"),
    "train": (
        "nucgen_tf.commands.train",
        "train one GAN stage (--stage 1|2|3), resuming from its checkpoints",
    ),
    "segment": (
        "nucgen_tf.commands.segment",
        "train a nucleus segmenter (real + synthetic folders) or predict instance labels with it",
    ),
    "experiment": (
        "nucgen_tf.commands.experiment",
        "the paper's Table I: train segmenters on real data alone and with each kind of synthetic data",
    ),
    "evaluate": (
        "nucgen_tf.commands.evaluate",
        "score predicted label TIFFs against true ones (pixel, instance and object F1, AP)",
    ),
    "realism": ("nucgen_tf.commands.realism", "how far a synthetic set is from real data, per statistic"),
}
# Commands that load TensorFlow anyway: it is imported up front, quietly.
TENSORFLOW_COMMANDS = ("synthesize", "paint", "train", "segment", "experiment")


def quiet_tensorflow(environ: MutableMapping[str, str]) -> bool:
    """Sets TensorFlow's C++ log level to warnings-off unless the user chose otherwise.

    Returns:
        Whether to hide TensorFlow's start-up lines: False when `NUCGEN_TF_LOGS` is set to
        anything but 0 or `TF_CPP_MIN_LOG_LEVEL` was set by the user.
    """
    if environ.get("NUCGEN_TF_LOGS", "0") not in ("", "0") or "TF_CPP_MIN_LOG_LEVEL" in environ:
        return False
    environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return True


@contextlib.contextmanager
def _native_stderr_captured(enabled: bool) -> Iterator[None]:
    """Sends file descriptor 2 to a temporary file; replays it if the block raises."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            capture.seek(0)
            sys.stderr.write(capture.read().decode(errors="replace"))
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: nucgen <command> [--flags]  (nucgen <command> --help for its flags)", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        sys.stdout.write(usage())
        raise SystemExit(0 if len(argv) >= 2 else 2)
    name = argv[1]
    if name not in COMMANDS:
        sys.stderr.write(f"nucgen: unknown command {name!r}\n\n{usage()}")
        raise SystemExit(2)
    helping = any(arg in ("-h", "--help", "-?") for arg in argv[2:])
    with _native_stderr_captured(quiet_tensorflow(os.environ)):
        module = importlib.import_module(COMMANDS[name][0])
        if name in TENSORFLOW_COMMANDS and not helping:
            import keras  # noqa: F401  (imports TensorFlow; both print start-up lines)
        define_flags = getattr(module, "define_flags", None)
        if define_flags is not None:  # modules may also define their flags at import
            define_flags()
    if helping:
        # absl's --help would show this module's flags; show the subcommand's.
        from absl import flags

        owners = [m for m in flags.FLAGS.flags_by_module_dict() if m.startswith("nucgen_tf")]
        sys.stdout.write("\n".join([module.__doc__ or "", *map(flags.FLAGS.module_help, owners)]) + "\n")
        raise SystemExit(0)
    from nucgen_tf.io import DataError

    try:
        app.run(module.main, argv=[f"nucgen {name}", *argv[2:]])
    except DataError as error:  # a command that did not turn it into its message
        raise SystemExit(f"nucgen {name}: {error}") from error
    except KeyboardInterrupt:
        sys.stderr.write(f"nucgen {name}: interrupted\n")
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
