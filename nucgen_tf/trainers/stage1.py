"""Train stage 1: `python -m nucgen_tf.trainers.stage1 --flagfile=configs/bbbc039/stage1.flags`.

A thin alias of `nucgen train --stage 1` (`nucgen_tf.commands.train`), kept for that path.
"""

if __name__ == "__main__":
    from nucgen_tf.commands import train

    train.run_stage(1)
