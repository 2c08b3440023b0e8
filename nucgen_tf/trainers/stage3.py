"""Train stage 3: `python -m nucgen_tf.trainers.stage3 --flagfile=configs/bbbc039/stage3.flags`."""

from absl import app

from nucgen_tf.trainers import train

if __name__ == "__main__":
    train.define_flags(stage=3)
    app.run(train.main)
