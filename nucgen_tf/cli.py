"""Old home of the `nucgen` dispatcher, now `nucgen_tf.commands.nucgen`.

Kept because installs made before the move have a `nucgen` script that calls
`nucgen_tf.cli:main` (until reinstalled), and `python -m nucgen_tf.cli` still runs.
"""

from nucgen_tf.commands.nucgen import main

if __name__ == "__main__":
    main()
