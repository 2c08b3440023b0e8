"""Train stage 2: `python -m nucgen_tf.trainers.stage2 --flagfile=configs/bbbc039/stage2.flags`."""

from absl import app

from nucgen_tf.trainers import train

if __name__ == "__main__":
    train.define_flags(stage=2)
    app.run(train.main)
