"""Train stage 1: `python -m nucgen_tf.trainers.stage1 --flagfile=configs/bbbc039/stage1.flags`."""

from absl import app

from nucgen_tf.trainers import train

if __name__ == "__main__":
    train.define_flags(stage=1)
    app.run(train.main)
