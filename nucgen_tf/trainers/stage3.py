"""Train stage 3: `python -m nucgen_tf.trainers.stage3 --flagfile=configs/bbbc039/stage3.flags`.

A thin alias of `nucgen train --stage 3` (`nucgen_tf.commands.train`), kept for that path.
"""

if __name__ == "__main__":
    from nucgen_tf.commands import train

    train.run_stage(3)
