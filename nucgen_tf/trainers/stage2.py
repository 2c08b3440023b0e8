"""Train stage 2: `python -m nucgen_tf.trainers.stage2 --flagfile=configs/bbbc039/stage2.flags`.

A thin alias of `nucgen train --stage 2` (`nucgen_tf.commands.train`), kept for that path.
"""

if __name__ == "__main__":
    from nucgen_tf.commands import train

    train.run_stage(2)
