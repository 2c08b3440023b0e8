"""Image history pool for the CycleGAN discriminators (Shrivastava et al. 2017; CycleGAN).

The discriminators are updated with a mix of the newest fakes and fakes from earlier
generator versions, which damps the oscillation between generator and discriminator.
The reference (pytorch-CycleGAN-and-pix2pix `util/image_pool.py`), per image of a batch:
while the pool is not full, store the image and return it; afterwards, with probability
0.5 return a random stored image and store the new one in its place, else return the new
image.

This version keeps that rule but holds the pool in `tf.Variable`s and draws from an owned
`tf.random.Generator`, so that:

- it runs inside `tf.function` / XLA (no Python state, branch-free per-image update);
- `tf.train.Checkpoint` saves the stored images, the fill count AND the generator state:
  after a restore the pool returns exactly what it would have returned without the
  interruption;
- the same seed gives the same sequence.

Shape: the variables need the sample shape (*spatial, C). Give it as `sample_shape`, call
`build(sample_shape)`, or let the first call build the pool from its (static) input shape;
the last works eagerly and in the first trace of a `tf.function`, but under a
`tf.distribute` strategy build the pool first (in the strategy scope; `CycleGAN.build` does).
Restoring a checkpoint into an unbuilt pool is deferred until it is built.

Under `MirroredStrategy` each replica keeps its own pool (ON_READ variables) and draws
different numbers from the same generator; a checkpoint stores the first replica's pool.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf


class ImagePool(tf.Module):
    """A fixed-size pool of past fake images with the reference 50% swap rule.

    Args:
        size: number of images kept; 0 disables the pool (calls return their input).
        seed: seed of the pool's random generator; None for a non-deterministic seed.
        sample_shape: (*spatial, C) of one image; if given, the variables are created now.
        name: module name (also the checkpoint scope).
    """

    def __init__(
        self,
        size: int,
        seed: int | None = 0,
        sample_shape: Sequence[int] | None = None,
        name: str = "image_pool",
    ):
        super().__init__(name=name)
        if size < 0:
            raise ValueError(f"`size` must be >= 0. Received: size={size}")
        self.size = int(size)
        self.sample_shape: tuple[int, ...] | None = None
        self.images: tf.Variable | None = None
        self.count: tf.Variable | None = None
        if self.size:
            self.rng = (
                tf.random.Generator.from_seed(seed)
                if seed is not None
                else tf.random.Generator.from_non_deterministic_state()
            )
        if sample_shape is not None:
            self.build(sample_shape)

    @property
    def built(self) -> bool:
        return self.size == 0 or self.images is not None

    def build(self, sample_shape: Sequence[int]) -> None:
        """Create the variables for images of shape (*spatial, C); idempotent."""
        shape = tuple(sample_shape)
        if not shape or any(s is None or int(s) < 1 for s in shape):
            raise ValueError(
                "The pool needs a fully known sample shape (*spatial, C); build the model with "
                f"a fixed patch size. Received: sample_shape={shape}"
            )
        shape = tuple(int(s) for s in shape)
        if self.sample_shape is not None:
            if shape != self.sample_shape:
                raise ValueError(
                    f"Pool {self.name!r} was built for samples of shape {self.sample_shape}. "
                    f"Received: sample_shape={shape}"
                )
            return
        self.sample_shape = shape
        if self.size == 0:
            return
        # ON_READ: each replica of a MirroredStrategy keeps and updates its own pool;
        # ONLY_FIRST_REPLICA: checkpoints store (and restores broadcast) replica 0's pool.
        sync = dict(
            trainable=False,
            synchronization=tf.VariableSynchronization.ON_READ,
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )
        # init_scope: the pools may be built while Keras traces the model symbolically
        # (fit under a strategy) or in the first trace of a tf.function.
        with tf.init_scope(), self.name_scope:
            self.images = tf.Variable(tf.zeros((self.size,) + shape, tf.float32), name="images", **sync)
            self.count = tf.Variable(0, dtype=tf.int32, name="count", **sync)

    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        """Swap a batch of new fakes (B, *spatial, C) against the pool; same shape/dtype out."""
        images = tf.convert_to_tensor(images)
        if self.size == 0:
            return images
        if not self.built:
            self.build(images.shape[1:])
        elif tuple(images.shape[1:]) != self.sample_shape and images.shape[1:].is_fully_defined():
            raise ValueError(
                f"Pool {self.name!r} holds samples of shape {self.sample_shape}. "
                f"Received: images.shape={tuple(images.shape)}"
            )
        dtype = images.dtype
        new = tf.cast(images, tf.float32)
        n = tf.shape(new)[0]
        coins = self.rng.uniform([n], dtype=tf.float32)
        slots = self.rng.uniform([n], minval=0, maxval=self.size, dtype=tf.int32)
        size = tf.constant(self.size, tf.int32)

        def body(i, pool, count, out):
            # Branch-free form of the reference rule, so it traces and compiles with XLA.
            image = new[i]
            filling = count < size
            slot = tf.where(filling, count, slots[i])
            old = tf.gather(pool, slot)
            swap = tf.logical_and(tf.logical_not(filling), coins[i] > 0.5)
            returned = tf.where(swap, old, image)
            stored = tf.where(tf.logical_or(filling, swap), image, old)
            pool = tf.tensor_scatter_nd_update(pool, tf.reshape(slot, (1, 1)), stored[None])
            return i + 1, pool, tf.minimum(count + 1, size), out.write(i, returned)

        out = tf.TensorArray(tf.float32, size=n, element_shape=self.sample_shape)
        _, pool, count, out = tf.while_loop(
            lambda i, *_: i < n,
            body,
            (tf.constant(0), tf.convert_to_tensor(self.images), tf.convert_to_tensor(self.count), out),
        )
        self.images.assign(pool)
        self.count.assign(count)
        result = tf.cast(out.stack(), dtype)
        result.set_shape(images.shape)
        return result
