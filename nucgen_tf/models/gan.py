"""The three GAN models of the paper: CycleGAN (stage 1), PairedCycleGAN (stage 2), Pix2Pix (stage 3).

Each model is a `keras.Model` that owns its networks and implements `train_step` /
`test_step` with `tf.GradientTape`, so it trains with `model.fit(dataset, ...)` or with a
custom loop calling `model.train_step(batch)` inside a `tf.function`. Subclass contract
(`_GanBase`): `_unpack(data)` -> tuple of float32 tensors, `_generator_terms(batch,
training)` -> (loss terms, fakes), `_generator_objective(terms)`, `_pool(fakes)`,
`_discriminator_terms(batch, fakes, training)`; the base class does the updates, the
mixed-precision loss scaling, the distribution scaling and the trackers.

One training step: generator update on the weighted generator terms (discriminators fixed),
then discriminator update on the real images and the generator's fakes of that step
(through the image pool for the CycleGAN models), as the reference CycleGAN does.

Distribution: every loss in `nucgen_tf.losses` is a mean over the LOCAL (per-replica)
batch. Under a `tf.distribute` strategy with R replicas the differentiated loss is divided
by R; `optimizer.apply_gradients`, called in the replica context, all-reduces the gradients
with SUM (Keras `TFOptimizer._all_reduce_sum_gradients`), so the applied gradient is the mean
over replicas of the local-mean gradients, i.e. the global-batch mean for equal local
batches. This is what Keras' own `train_step` does (`scale_loss_for_distribution`). Trackers
record the unscaled local means weighted by the local batch size.

Non-finite steps: an update whose loss or gradients are not finite is applied as a zero
gradient (no new information; Adam's momentum still decays), its losses are left out of the
trackers and the "skipped_steps" tracker counts it, so one numerical glitch (seen as rare,
non-reproducible NaN gradients in 3D CycleGAN runs on CPU) does not poison the weights; the
training loop stops when such steps persist. The generators' fakes are made finite before
they reach the image pool and the discriminators.

Mixed precision: under "mixed_float16" `compile` wraps each optimizer in a
`LossScaleOptimizer`; the loss is scaled inside the tape, `apply_gradients` unscales and
skips non-finite steps (the overflow steps of its loss-scale search are not counted).
Every loss is computed in float32 and the networks' last layers are float32.
"mixed_bfloat16" needs no loss scaling.

Checkpoints: `tf.train.Checkpoint(model=gan)` captures the networks, both optimizers (after
`compile`) and the image pools with their random generators, i.e. everything an exact
resume needs. A `.keras` file stores the networks, the loss config and the optimizer state
(`get_compile_config` / `compile_from_config`), but not the pools.

Discriminator options (`GanLossConfig`, `DiscriminatorConfig.scales`; all off by default,
which leaves the losses and updates of earlier versions unchanged):

- multi-scale discriminators return one logits tensor per scale; every adversarial term is
  the mean of its per-scale values;
- `diff_augment`: every discriminator input, real or fake, in both updates, goes through
  DiffAugment before the instance noise (`nucgen_tf.models.augment`), drawn from the model's
  own checkpointed `augment_rng`. Pix2Pix augments the concatenated (condition, image) pair,
  so both move together, and jitters the color of the image channels only;
- `lambda_feature_matching` (Pix2Pix): term "feature_matching" of the generator; the real
  and the fake pair take the same augmentation, so their features are compared where they
  correspond. The features come from `discriminators.feature_extractor`, built once on the
  discriminator's own layers and kept out of Keras' and tf.train's tracking, so the saved
  model and the checkpoints hold exactly what they held before;
- `r1_gamma`: terms "d_r1" (Pix2Pix) / "d_r1_a", "d_r1_b" (CycleGAN) of the discriminator
  update (already weighted; `d_loss` is the sum of the logged discriminator terms): the
  gradient of the real logits with respect to the discriminator input (as D sees it, after
  augmentation) from a nested tape, in float32, under "mixed_float16" with the loss scale of
  `d_optimizer`. Training steps only; `test_step` leaves it out.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import keras
import tensorflow as tf
from absl import logging

from nucgen_tf import losses
from nucgen_tf.config import from_dict
from nucgen_tf.models import augment
from nucgen_tf.models.config import DiscriminatorConfig, GanLossConfig, GeneratorConfig
from nucgen_tf.models.discriminators import discriminator_from_config, feature_extractor, logits_list
from nucgen_tf.models.generators import generator_from_config, with_noise
from nucgen_tf.models.pool import ImagePool


def _in_channels(net: keras.Model) -> int:
    return int(net.inputs[0].shape[-1])


def _out_channels(net: keras.Model) -> int:
    return int(net.outputs[0].shape[-1])


SKIPPED = "skipped_steps"


def _finite_norm(tensors) -> tf.Tensor:
    """Whether the global norm is finite: no NaN/Inf element and no element big enough
    (|g| > ~1e19) that its square overflows, which would turn Adam's second moment (and
    global-norm clipping) into Inf/NaN and the weights into NaN."""
    norm = tf.linalg.global_norm([tf.cast(t, tf.float32) for t in tensors if t is not None])
    return tf.math.is_finite(norm)


def _guard(optimizer, loss: tf.Tensor, grads: list) -> tuple[list, tf.Tensor]:
    """(gradients, finite): all-zero gradients instead of non-finite or overflowing ones.

    A `LossScaleOptimizer` sees its gradients unchanged: it skips overflow steps itself and
    needs them to lower its scale; there only the loss decides `finite`.
    """
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return grads, tf.reduce_all(tf.math.is_finite(loss))
    finite = tf.logical_and(tf.reduce_all(tf.math.is_finite(loss)), _finite_norm(grads))
    return [None if g is None else tf.where(finite, g, tf.zeros_like(g)) for g in grads], finite


def _finite_or_zero(x: tf.Tensor) -> tf.Tensor:
    return tf.where(tf.math.is_finite(x), x, tf.zeros_like(x))


def _ndim(net: keras.Model) -> int:
    return len(net.inputs[0].shape) - 2


def _float32(x) -> tf.Tensor:
    return tf.cast(x, tf.float32)


def _pair(data: Any, keys: tuple[str, str], model: str) -> tuple[tf.Tensor, tf.Tensor]:
    if isinstance(data, dict):
        missing = [k for k in keys if k not in data]
        if missing:
            raise ValueError(f"{model} needs a batch dict with keys {keys}. Received keys: {sorted(data)}")
        return _float32(data[keys[0]]), _float32(data[keys[1]])
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return _float32(data[0]), _float32(data[1])
    raise ValueError(
        f"{model} needs a batch ({keys[0]}, {keys[1]}) or a dict with keys {keys}. "
        f"Received: {type(data).__name__} of length {len(data) if hasattr(data, '__len__') else '?'}"
    )


def _with_channels(x: tf.Tensor, channels: int) -> tf.Tensor:
    """`x` cut or padded to `channels` channels; padding is -1, the "absent" value of every map."""
    have = int(x.shape[-1])
    if have >= channels:
        return x[..., :channels]
    pad = -tf.ones(tf.concat([tf.shape(x)[:-1], [channels - have]], axis=0), x.dtype)
    return tf.concat([x, pad], axis=-1)


def _scale_mean(values: list[tf.Tensor]) -> tf.Tensor:
    """The mean of per-scale loss values; one scale's value as it is (bit-identical single-scale losses)."""
    return values[0] if len(values) == 1 else tf.add_n(values) / float(len(values))


def _generator_adversarial(logits: list[tf.Tensor], kind: str) -> tf.Tensor:
    """`losses.generator_adversarial_loss` averaged over the scales of a discriminator."""
    return _scale_mean([losses.generator_adversarial_loss(lg, kind) for lg in logits])


class _Untracked:
    """Holds helpers (feature extractors) out of Keras' and tf.train's dependency tracking.

    A `keras.Model` attribute would add a second path to the discriminator's layers in the
    `.keras` file and in checkpoints; a plain object is ignored by both.
    """

    def __init__(self, **items):
        self.__dict__.update(items)


def _first(inputs: Any, key: str) -> Any:
    if isinstance(inputs, dict):
        return inputs[key]
    if isinstance(inputs, (tuple, list)):
        return inputs[0]
    return inputs


class _GanBase(keras.Model):
    """Two-optimizer adversarial training shared by the three models.

    Args:
        loss_config: loss weights, adversarial criterion and pool settings.
        **kwargs: `keras.Model` arguments (`name`, ...).
    """

    def __init__(self, loss_config: GanLossConfig | None = None, **kwargs):
        super().__init__(**kwargs)
        self.loss_config = loss_config if loss_config is not None else GanLossConfig()
        self.g_optimizer = None
        self.d_optimizer = None
        cfg = self.loss_config
        if cfg.diff_augment:
            # Only then: a checkpoint of a model without DiffAugment keeps its old contents.
            self.augment_rng = (
                tf.random.Generator.from_seed(cfg.pool_seed + 2)
                if cfg.pool_seed is not None
                else tf.random.Generator.from_non_deterministic_state()
            )

    # ----- subclass contract -------------------------------------------------------------
    def _networks(self) -> dict[str, keras.Model]:
        raise NotImplementedError

    def _generator_names(self) -> tuple[str, ...]:
        raise NotImplementedError

    def _unpack(self, data: Any) -> tuple[tf.Tensor, ...]:
        raise NotImplementedError

    def _generator_terms(self, batch, training: bool) -> tuple[dict[str, tf.Tensor], tuple]:
        raise NotImplementedError

    def _generator_objective(self, terms: dict[str, tf.Tensor]) -> tf.Tensor:
        raise NotImplementedError

    def _pool(self, fakes: tuple) -> tuple:
        return fakes

    def _discriminator_terms(self, batch, fakes: tuple, training: bool) -> dict[str, tf.Tensor]:
        raise NotImplementedError

    def _term_names(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        raise NotImplementedError

    # ----- shared machinery --------------------------------------------------------------
    def _create_trackers(self) -> None:
        g_names, d_names = self._term_names()
        names = ("g_loss", *g_names, "d_loss", *d_names)
        self._trackers = {name: keras.metrics.Mean(name=name) for name in names}
        self._trackers[SKIPPED] = keras.metrics.Sum(name=SKIPPED)

    @property
    def metrics(self) -> list:
        # Listed here so that fit/evaluate reset them every epoch.
        return list(self._trackers.values())

    @property
    def generator_variables(self) -> list:
        nets = self._networks()
        return [v for name in self._generator_names() for v in nets[name].trainable_variables]

    @property
    def discriminator_variables(self) -> list:
        nets = self._networks()
        return [
            v for name, net in nets.items() if name not in self._generator_names()
            for v in net.trainable_variables
        ]

    def _uses_float16(self) -> bool:
        if keras.mixed_precision.global_policy().name == "mixed_float16":
            return True
        return any(
            layer.dtype_policy.name == "mixed_float16"
            for net in self._networks().values()
            for layer in net.layers
        )

    def compile(
        self,
        g_optimizer: keras.optimizers.Optimizer,
        d_optimizer: keras.optimizers.Optimizer,
        *,
        jit_compile: bool | str = "auto",
        steps_per_execution: int = 1,
        run_eagerly: bool = False,
    ) -> None:
        """Attach one optimizer to the generators and one to the discriminators.

        Under "mixed_float16" each optimizer is wrapped in a `LossScaleOptimizer` (Keras'
        `compile` would only wrap `self.optimizer`, which a GAN does not use). Both are built
        here, on their variable lists, so that no variable is created while tracing and a
        checkpoint can be restored into them before the first step. Call `compile` inside
        `strategy.scope()` when distributing.

        Args:
            g_optimizer: optimizer of all generator weights.
            d_optimizer: optimizer of all discriminator weights (a different object).
            jit_compile: XLA for the train/test step, as in `keras.Model.compile`
                ("auto" means off on CPU-only machines).
            steps_per_execution: batches per compiled call, as in `keras.Model.compile`.
            run_eagerly: debug mode, as in `keras.Model.compile`.
        """
        if g_optimizer is None or d_optimizer is None:
            raise ValueError(
                "Both optimizers are required. "
                f"Received: g_optimizer={g_optimizer}, d_optimizer={d_optimizer}"
            )
        if g_optimizer is d_optimizer:
            raise ValueError("`g_optimizer` and `d_optimizer` must be different optimizer objects.")
        super().compile(
            optimizer=None,
            jit_compile=jit_compile,
            steps_per_execution=steps_per_execution,
            run_eagerly=run_eagerly,
            auto_scale_loss=False,
        )
        if self._uses_float16():
            if not isinstance(g_optimizer, keras.optimizers.LossScaleOptimizer):
                g_optimizer = keras.optimizers.LossScaleOptimizer(g_optimizer, name="g_loss_scale_optimizer")
            if not isinstance(d_optimizer, keras.optimizers.LossScaleOptimizer):
                d_optimizer = keras.optimizers.LossScaleOptimizer(d_optimizer, name="d_loss_scale_optimizer")
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        if not g_optimizer.built:
            g_optimizer.build(self.generator_variables)
        if not d_optimizer.built:
            d_optimizer.build(self.discriminator_variables)

    def get_compile_config(self) -> dict:
        if not self.compiled or self.g_optimizer is None:
            return {}

        def inner(opt):
            return opt.inner_optimizer if isinstance(opt, keras.optimizers.LossScaleOptimizer) else opt

        return {
            "g_optimizer": keras.optimizers.serialize(inner(self.g_optimizer)),
            "d_optimizer": keras.optimizers.serialize(inner(self.d_optimizer)),
            "jit_compile": self.jit_compile,
            "steps_per_execution": self.steps_per_execution,
        }

    def compile_from_config(self, config: dict) -> None:
        if not config:
            return
        self.compile(
            keras.optimizers.deserialize(config["g_optimizer"]),
            keras.optimizers.deserialize(config["d_optimizer"]),
            jit_compile=config.get("jit_compile", "auto"),
            steps_per_execution=config.get("steps_per_execution", 1),
        )

    def _require_compiled(self) -> None:
        if self.g_optimizer is None:
            raise ValueError(
                f"Call `{type(self).__name__}.compile(g_optimizer, d_optimizer)` before training."
            )

    def _track(
        self, values: dict[str, tf.Tensor], batch_size: tf.Tensor, finite: tf.Tensor | bool = True
    ) -> dict[str, tf.Tensor]:
        """Add a step's losses to the trackers; a non-finite step only counts as skipped."""
        finite = tf.cast(finite, tf.float32)
        for name, value in values.items():
            value = tf.where(finite > 0, value, tf.zeros_like(value))
            self._trackers[name].update_state(value, sample_weight=batch_size * finite)
        self._trackers[SKIPPED].update_state(1.0 - finite)
        return {m.name: m.result() for m in self.metrics}

    def _build_from_batch(self, batch: tuple[tf.Tensor, ...]) -> None:
        if self.built:
            return
        if tf.distribute.has_strategy() and not tf.distribute.in_cross_replica_context():
            raise ValueError(
                f"{type(self).__name__} must be built before a distributed step: call "
                "`model.build(input_shape)` inside `strategy.scope()` (fit does this)."
            )
        self.build([tuple(x.shape) for x in batch])

    def _augment_params(self, x: tf.Tensor, training: bool) -> dict[str, tf.Tensor] | None:
        """One DiffAugment draw for inputs shaped like x (None when not augmenting)."""
        policies = self.loss_config.diff_augment
        if not (training and policies):
            return None
        return augment.sample_params(x, policies, self.augment_rng)

    def _d_input(
        self,
        x: tf.Tensor,
        training: bool,
        *,
        color_channels: int | None = None,
        params: dict[str, tf.Tensor] | None = None,
        noise: bool = True,
    ) -> tf.Tensor:
        """What a discriminator sees of x: while training, DiffAugment (with `params` when
        given, else a new draw), then `instance_noise` if `noise`."""
        if training and self.loss_config.diff_augment:
            params = params if params is not None else self._augment_params(x, training)
            x = augment.apply(x, params, color_channels=color_channels)
        sigma = self.loss_config.instance_noise
        if noise and training and sigma > 0:
            x = x + tf.random.normal(tf.shape(x), stddev=sigma, dtype=x.dtype)
        return x

    def _discriminate(self, net: keras.Model, x: tf.Tensor, training: bool, **kwargs) -> list[tf.Tensor]:
        """The logits of `net` on `_d_input(x, ...)`, one tensor per scale."""
        return logits_list(net(self._d_input(x, training, **kwargs), training=training))

    def _discriminate_real(
        self, net: keras.Model, x: tf.Tensor, training: bool, **kwargs
    ) -> tuple[list[tf.Tensor], tf.Tensor | None]:
        """`_discriminate` on real inputs, and their R1 penalty while training with `r1_gamma` (else None).

        The penalty is the per-scale mean of `losses.r1_penalty`; the gradients come from a
        tape nested in the discriminator update's, which then differentiates through them.
        """
        gamma = self.loss_config.r1_gamma
        x = self._d_input(x, training, **kwargs)
        if not (training and gamma > 0):
            return logits_list(net(x, training=training)), None
        x = tf.cast(x, tf.float32)
        # Under float16 the gradients of a mixed-precision net can underflow: scale like the loss.
        opt = self.d_optimizer
        scale = (
            tf.convert_to_tensor(opt.dynamic_scale, tf.float32)
            if isinstance(opt, keras.optimizers.LossScaleOptimizer)
            else None
        )
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            logits = logits_list(net(x, training=training))
            sums = [tf.reduce_sum(tf.cast(logit, tf.float32)) for logit in logits]
            if scale is not None:
                sums = [total * scale for total in sums]
        penalties = []
        for total, logit in zip(sums, logits):
            grad = tf.cast(tape.gradient(total, x), tf.float32)
            if scale is not None:
                grad = grad / scale
            patches = tf.size(logit) // tf.shape(logit)[0]
            penalties.append(losses.r1_penalty(grad, patches, gamma))
        del tape
        return logits, _scale_mean(penalties)

    def generator_losses(self, data: Any, training: bool = False) -> dict[str, tf.Tensor]:
        """Generator terms of one batch and their weighted sum "g_loss" (no update)."""
        terms, _ = self._generator_terms(self._unpack(data), training)
        return {"g_loss": self._generator_objective(terms), **terms}

    def train_step(self, data: Any) -> dict[str, tf.Tensor]:
        """One generator update, then one discriminator update; returns the tracker means."""
        self._require_compiled()
        batch = self._unpack(data)
        self._build_from_batch(batch)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync

        g_vars = self.generator_variables
        with tf.GradientTape() as tape:
            g_terms, fakes = self._generator_terms(batch, training=True)
            g_loss = self._generator_objective(g_terms)
            scaled = self.g_optimizer.scale_loss(g_loss / replicas if replicas > 1 else g_loss)
        g_grads, g_finite = _guard(self.g_optimizer, g_loss, tape.gradient(scaled, g_vars))
        self.g_optimizer.apply_gradients(zip(g_grads, g_vars))

        fakes = tuple(tf.stop_gradient(f) for f in self._pool(tuple(_finite_or_zero(f) for f in fakes)))
        d_vars = self.discriminator_variables
        with tf.GradientTape() as tape:
            d_terms = self._discriminator_terms(batch, fakes, training=True)
            d_loss = tf.add_n(list(d_terms.values()))
            scaled = self.d_optimizer.scale_loss(d_loss / replicas if replicas > 1 else d_loss)
        d_grads, d_finite = _guard(self.d_optimizer, d_loss, tape.gradient(scaled, d_vars))
        self.d_optimizer.apply_gradients(zip(d_grads, d_vars))

        batch_size = tf.cast(tf.shape(batch[0])[0], tf.float32)
        values = {"g_loss": g_loss, **g_terms, "d_loss": d_loss, **d_terms}
        return self._track(values, batch_size, tf.logical_and(g_finite, d_finite))

    def test_step(self, data: Any) -> dict[str, tf.Tensor]:
        """The training losses without updates; the discriminators see this step's fakes (no pool)."""
        batch = self._unpack(data)
        g_terms, fakes = self._generator_terms(batch, training=False)
        g_loss = self._generator_objective(g_terms)
        d_terms = self._discriminator_terms(batch, fakes, training=False)
        d_loss = tf.add_n(list(d_terms.values()))
        batch_size = tf.cast(tf.shape(batch[0])[0], tf.float32)
        return self._track({"g_loss": g_loss, **g_terms, "d_loss": d_loss, **d_terms}, batch_size)

    def get_config(self) -> dict:
        config = super().get_config()
        for name, net in self._networks().items():
            config[name] = keras.saving.serialize_keras_object(net)
        config["loss_config"] = dataclasses.asdict(self.loss_config)
        return config

    @classmethod
    def from_config(cls, config: dict, custom_objects=None):
        config = copy.deepcopy(config)  # Keras' deserialization pops keys of nested dicts
        loss_config = from_dict(GanLossConfig, config.pop("loss_config", {}))
        nets = {
            name: keras.saving.deserialize_keras_object(config.pop(name), custom_objects=custom_objects)
            for name in cls._network_names
        }
        return cls(**nets, loss_config=loss_config, **config)


@keras.saving.register_keras_serializable(package="nucgen")
class CycleGAN(_GanBase):
    """CycleGAN (Zhu et al. 2017) for unpaired domains A and B (paper stage 1: seeds <-> boxes).

    Generator terms: adversarial `g_adv_ab` = crit(D_B(G_AB(a)), real), `g_adv_ba`;
    cycle `cycle_a` = |G_BA(G_AB(a)) - a|, `cycle_b`; identity `identity_a` =
    |G_BA(a) - a|, `identity_b` = |G_AB(b) - b|. When the domains' channel counts differ (stage
    2's RGB ellipses and RGB + boundary masks) the identity terms use the leading channels
    both share, the input padded with -1 or cut to the generator's channels: this keeps the
    palette colors, which the cycle alone lets a generator trade for a hidden code.
    Objective: adv_ab + adv_ba + lambda_cycle * (cycle_a + cycle_b) + lambda_cycle *
    lambda_identity * (identity_a + identity_b). Discriminator terms `d_a`, `d_b` = 0.5 *
    (crit(D(real), real) + crit(D(pooled fake), fake)); with `instance_noise` every
    discriminator input gets Gaussian noise while training. With `r1_gamma`, `d_r1_a` and
    `d_r1_b`; with `diff_augment` every discriminator input is augmented (all its channels
    take the color policy: each domain is one sample, with no condition beside it).
    `lambda_feature_matching` is refused: a fake has no real partner here (and in
    PairedCycleGAN a direct loss between F(B_i) and S_i is exactly what the paper avoids).

    Args:
        gen_ab: generator A -> B, (B, *spatial, C_A) -> (B, *spatial, C_B).
        gen_ba: generator B -> A.
        disc_a: discriminator of domain A (C_A input channels).
        disc_b: discriminator of domain B (C_B input channels).
        loss_config: weights, criterion, pool size and seed.
        **kwargs: `keras.Model` arguments.

    Data: `(a, b)` or `{"a": a, "b": b}`, float32 in [-1, 1]. `model(a)` / `predict` run
    G_AB. The pools need a fixed patch shape: `model.build((None, *spatial, C_A))`, or
    let `fit` / the first step build them.
    """

    _network_names = ("gen_ab", "gen_ba", "disc_a", "disc_b")

    def __init__(
        self,
        gen_ab: keras.Model,
        gen_ba: keras.Model,
        disc_a: keras.Model,
        disc_b: keras.Model,
        loss_config: GanLossConfig | None = None,
        **kwargs,
    ):
        super().__init__(loss_config, **kwargs)
        channels_a, channels_b = _in_channels(gen_ab), _out_channels(gen_ab)
        ndim = _ndim(gen_ab)
        expected = {
            "gen_ba": (gen_ba, channels_b, channels_a),
            "disc_a": (disc_a, channels_a, 1),
            "disc_b": (disc_b, channels_b, 1),
        }
        for name, (net, c_in, c_out) in expected.items():
            got = (_ndim(net), _in_channels(net), _out_channels(net))
            if got != (ndim, c_in, c_out):
                raise ValueError(
                    f"`{name}` must map {ndim}D inputs with {c_in} channels to {c_out} channels, "
                    f"to match gen_ab ({channels_a} -> {channels_b}). Received: ndim, in, out = {got}"
                )
        self.ndim = ndim
        self.channels_a = channels_a
        self.channels_b = channels_b
        self.gen_ab = gen_ab
        self.gen_ba = gen_ba
        self.disc_a = disc_a
        self.disc_b = disc_b
        cfg = self.loss_config
        if cfg.lambda_feature_matching > 0:
            raise ValueError(
                f"{type(self).__name__} has no real partner for a fake, so no feature matching; "
                "`lambda_feature_matching` is a Pix2Pix (stage 3) option. "
                f"Received: lambda_feature_matching={cfg.lambda_feature_matching}"
            )
        self.use_identity = cfg.lambda_identity > 0 and cfg.lambda_cycle > 0
        if self.use_identity and channels_a != channels_b:
            logging.info(
                "%s: identity loss on the %d channels the domains share (%d and %d channels).",
                self.name, min(channels_a, channels_b), channels_a, channels_b,
            )
        seed_b = None if cfg.pool_seed is None else cfg.pool_seed + 1
        # pool_a holds fakes of domain A (from gen_ba) for disc_a; pool_b fakes of B for disc_b.
        self.pool_a = ImagePool(cfg.pool_size, seed=cfg.pool_seed, name="pool_a")
        self.pool_b = ImagePool(cfg.pool_size, seed=seed_b, name="pool_b")
        self._create_trackers()
        if cfg.pool_size == 0:
            self.built = True

    def _networks(self) -> dict[str, keras.Model]:
        return {"gen_ab": self.gen_ab, "gen_ba": self.gen_ba, "disc_a": self.disc_a, "disc_b": self.disc_b}

    def _generator_names(self) -> tuple[str, ...]:
        return ("gen_ab", "gen_ba")

    def _term_names(self):
        g = ("g_adv_ab", "g_adv_ba", "cycle_a", "cycle_b")
        if self.use_identity:
            g += ("identity_a", "identity_b")
        d = ("d_a", "d_b")
        if self.loss_config.r1_gamma > 0:
            d += ("d_r1_a", "d_r1_b")
        return g, d

    def build(self, input_shape) -> None:
        """Create the image pools for patches of a fixed size.

        Args:
            input_shape: the shape of a domain-A batch, (B, *spatial, C_A); or a pair /
                dict {"a", "b"} of both domains' shapes. Without B's shape, domain B is
                assumed to share A's spatial size.
        """
        if isinstance(input_shape, dict):
            shape_a, shape_b = input_shape["a"], input_shape.get("b", input_shape["a"])
        elif input_shape and isinstance(input_shape[0], (tuple, list)):
            shape_a, shape_b = input_shape[0], input_shape[-1]
        else:
            shape_a = shape_b = input_shape
        spatial_a, spatial_b = tuple(shape_a)[1:-1], tuple(shape_b)[1:-1]
        if len(spatial_a) != self.ndim or len(spatial_b) != self.ndim:
            raise ValueError(
                f"{self.name} is {self.ndim}D; build it with (B, *spatial, C) shapes. "
                f"Received: input_shape={input_shape}"
            )
        self.pool_b.build(spatial_a + (self.channels_b,))
        self.pool_a.build(spatial_b + (self.channels_a,))

    def call(self, inputs, training: bool = False):
        return self.gen_ab(_first(inputs, "a"), training=training)

    def _unpack(self, data):
        return _pair(data, ("a", "b"), type(self).__name__)

    def _generator_terms(self, batch, training):
        real_a, real_b = batch
        fake_b = self.gen_ab(real_a, training=training)
        fake_a = self.gen_ba(real_b, training=training)
        kind = self.loss_config.adversarial
        terms = {
            "g_adv_ab": _generator_adversarial(self._discriminate(self.disc_b, fake_b, training), kind),
            "g_adv_ba": _generator_adversarial(self._discriminate(self.disc_a, fake_a, training), kind),
            "cycle_a": losses.cycle_loss(real_a, self.gen_ba(fake_b, training=training)),
            "cycle_b": losses.cycle_loss(real_b, self.gen_ab(fake_a, training=training)),
        }
        if self.use_identity:
            shared = min(self.channels_a, self.channels_b)
            same_a = self.gen_ba(_with_channels(real_a, self.channels_b), training=training)
            same_b = self.gen_ab(_with_channels(real_b, self.channels_a), training=training)
            terms["identity_a"] = losses.identity_loss(real_a[..., :shared], same_a[..., :shared])
            terms["identity_b"] = losses.identity_loss(real_b[..., :shared], same_b[..., :shared])
        return terms, (fake_a, fake_b)

    def _generator_objective(self, terms):
        cfg = self.loss_config
        total = terms["g_adv_ab"] + terms["g_adv_ba"]
        total += cfg.lambda_cycle * (terms["cycle_a"] + terms["cycle_b"])
        if self.use_identity:
            total += cfg.lambda_cycle * cfg.lambda_identity * (terms["identity_a"] + terms["identity_b"])
        return total

    def _pool(self, fakes):
        fake_a, fake_b = fakes
        return self.pool_a(fake_a), self.pool_b(fake_b)

    def _discriminator_terms(self, batch, fakes, training):
        (real_a, real_b), (fake_a, fake_b) = batch, fakes
        kind = self.loss_config.adversarial
        terms, penalties = {}, {}
        for domain, net, real, fake in (
            ("a", self.disc_a, real_a, fake_a), ("b", self.disc_b, real_b, fake_b)
        ):  # fmt: skip
            real_logits, penalties[f"d_r1_{domain}"] = self._discriminate_real(net, real, training)
            fake_logits = self._discriminate(net, fake, training)
            terms[f"d_{domain}"] = _scale_mean(
                [losses.discriminator_adversarial_loss(r, f, kind) for r, f in zip(real_logits, fake_logits)]
            )
        return {**terms, **{name: value for name, value in penalties.items() if value is not None}}


@keras.saving.register_keras_serializable(package="nucgen")
class PairedCycleGAN(CycleGAN):
    """The paper's stage-2 strategy: CycleGAN losses on CORRESPONDING pairs (B_i, S_i).

    Domain A holds the colored ellipses B_i of a real mask (3 channels), domain B the colored
    mask + boundary S_i of the same mask (4 channels). Every batch pairs them, so that F
    (`gen_ab`) learns masks "constrained" by the given boxes, yet there is NEVER a direct loss
    between F(B_i) and S_i: F(B_i) is only asked to look like the distribution {S_i} (through
    D_S) and to map back to B_i (cycle), because one box fits many plausible masks and a
    pix2pix-style |F(B_i) - S_i| would collapse that one-to-many mapping (paper Sec. II-B).
    S_i enters the objective only as the target of its own cycle |F(G(S_i)) - S_i|, as the
    input of G, and as a real sample for D_S.

    The losses are exactly `CycleGAN`'s; only the data differ (pairs, not independent
    shuffles). The identity terms compare the three color channels both domains share:
    G(S_i's colors) should keep them, F(B_i with no boundary) should keep B_i. They map a
    sample to its own domain, so they are no direct loss between F(B_i) and S_i.
    """


@keras.saving.register_keras_serializable(package="nucgen")
class Pix2Pix(_GanBase):
    """pix2pix (Isola et al. 2017) with a conditional PatchGAN (paper stage 3: mask -> image).

    Generator terms: `g_adv` = crit(D(concat(x, G(x))), real) and `l1` = |G(x) - y|;
    objective g_adv + lambda_l1 * l1. Discriminator terms `d_real` = 0.5 * crit(D(concat(x,
    y)), real) and `d_fake` = 0.5 * crit(D(concat(x, G(x))), fake). No image pool, as in the
    reference pix2pix. Options: `feature_matching` (pix2pixHD) in the generator objective,
    weighted by `lambda_feature_matching`; `d_r1` with `r1_gamma`; DiffAugment of the
    (condition, image) pair with the color policy on the image channels only (the mask's
    palette colors are labels). `instance_noise` is not used, as before.

    Args:
        generator: (B, *spatial, C_in [+ noise_channels]) -> (B, *spatial, C_out).
        discriminator: takes C_in + C_out channels (condition and image concatenated).
        loss_config: weights and criterion (`pool_size` is not used).
        noise_channels: the generator's last input channels are N(0, 1) noise, drawn anew
            for every call (`generators.with_noise`); the discriminator sees the condition only.
        **kwargs: `keras.Model` arguments.

    Data: `(x, y)` or `{"x": x, "y": y}`. `model(x)` / `predict` run the generator.
    """

    _network_names = ("generator", "discriminator")

    def __init__(
        self,
        generator: keras.Model,
        discriminator: keras.Model,
        loss_config: GanLossConfig | None = None,
        noise_channels: int = 0,
        **kwargs,
    ):
        super().__init__(loss_config, **kwargs)
        if not 0 <= noise_channels < _in_channels(generator):
            raise ValueError(
                f"`noise_channels` must be in [0, {_in_channels(generator)}) (the generator's input "
                f"channels). Received: noise_channels={noise_channels}"
            )
        self.noise_channels = int(noise_channels)
        c_out, ndim = _out_channels(generator), _ndim(generator)
        c_in = _in_channels(generator) - self.noise_channels
        got = (_ndim(discriminator), _in_channels(discriminator), _out_channels(discriminator))
        if got != (ndim, c_in + c_out, 1):
            raise ValueError(
                f"`discriminator` must map {ndim}D inputs with {c_in} + {c_out} channels (condition, image) "
                f"to 1 channel. Received: ndim, in, out = {got}"
            )
        self.ndim = ndim
        self.generator = generator
        self.discriminator = discriminator
        self.image_channels = c_out
        self.use_feature_matching = self.loss_config.lambda_feature_matching > 0
        self._helpers = _Untracked(
            features=feature_extractor(discriminator) if self.use_feature_matching else None
        )
        self._create_trackers()
        self.built = True

    def _networks(self):
        return {"generator": self.generator, "discriminator": self.discriminator}

    def _generator_names(self):
        return ("generator",)

    def _term_names(self):
        g = ("g_adv", "l1") + (("feature_matching",) if self.use_feature_matching else ())
        return g, ("d_real", "d_fake") + (("d_r1",) if self.loss_config.r1_gamma > 0 else ())

    def call(self, inputs, training: bool = False):
        return self.generator(with_noise(_first(inputs, "x"), self.noise_channels), training=training)

    def get_config(self) -> dict:
        return {**super().get_config(), "noise_channels": self.noise_channels}

    def _unpack(self, data):
        return _pair(data, ("x", "y"), type(self).__name__)

    def _generator_terms(self, batch, training):
        x, y = batch
        fake = self.generator(with_noise(x, self.noise_channels), training=training)
        fake_pair = tf.concat([x, fake], axis=-1)
        # Pix2Pix never added instance noise; DiffAugment's color only touches the image.
        d_args = dict(color_channels=self.image_channels, noise=False)
        matching = None
        if self.use_feature_matching:
            # One augmentation draw for both pairs: features compared at corresponding places.
            params = self._augment_params(fake_pair, training)
            extract = self._helpers.features
            fake_out = extract(self._d_input(fake_pair, training, params=params, **d_args), training=training)
            real_pair = self._d_input(tf.concat([x, y], axis=-1), training, params=params, **d_args)
            real_out = extract(real_pair, training=training)
            logits = logits_list(fake_out["logits"])
            matching = losses.feature_matching_loss(real_out["features"], fake_out["features"])
        else:
            logits = self._discriminate(self.discriminator, fake_pair, training, **d_args)
        kind = self.loss_config.adversarial
        terms = {
            "g_adv": _generator_adversarial(logits, kind),
            "l1": losses.l1_loss(y, fake),
        }
        if matching is not None:
            terms["feature_matching"] = matching
        return terms, (fake,)

    def _generator_objective(self, terms):
        total = terms["g_adv"] + self.loss_config.lambda_l1 * terms["l1"]
        if self.use_feature_matching:
            total += self.loss_config.lambda_feature_matching * terms["feature_matching"]
        return total

    def _discriminator_terms(self, batch, fakes, training):
        (x, y), (fake,) = batch, fakes
        kind = self.loss_config.adversarial
        d_args = dict(color_channels=self.image_channels, noise=False)
        real_logits, r1 = self._discriminate_real(
            self.discriminator, tf.concat([x, y], axis=-1), training, **d_args
        )
        fake_logits = self._discriminate(
            self.discriminator, tf.concat([x, tf.cast(fake, x.dtype)], axis=-1), training, **d_args
        )
        terms = {
            "d_real": 0.5 * _scale_mean(
                [losses.adversarial_criterion(lg, losses.REAL_LABEL, kind) for lg in real_logits]
            ),
            "d_fake": 0.5 * _scale_mean(
                [losses.adversarial_criterion(lg, losses.FAKE_LABEL, kind) for lg in fake_logits]
            ),
        }
        if r1 is not None:
            terms["d_r1"] = r1
        return terms


def build_cyclegan(
    ndim: int,
    channels_a: int,
    channels_b: int,
    generator: GeneratorConfig | None = None,
    discriminator: DiscriminatorConfig | None = None,
    loss: GanLossConfig | None = None,
    *,
    paired: bool = False,
    name: str | None = None,
) -> CycleGAN:
    """Networks from configs, wrapped in a `CycleGAN` (stage 1) or `PairedCycleGAN` (stage 2)."""
    generator = generator if generator is not None else GeneratorConfig()
    discriminator = discriminator if discriminator is not None else DiscriminatorConfig()
    cls = PairedCycleGAN if paired else CycleGAN
    return cls(
        generator_from_config(generator, ndim, channels_a, channels_b, name="gen_ab"),
        generator_from_config(generator, ndim, channels_b, channels_a, name="gen_ba"),
        discriminator_from_config(discriminator, ndim, channels_a, name="disc_a"),
        discriminator_from_config(discriminator, ndim, channels_b, name="disc_b"),
        loss_config=loss,
        name=name or ("paired_cyclegan" if paired else "cyclegan"),
    )


def build_pix2pix(
    ndim: int,
    in_channels: int,
    out_channels: int,
    generator: GeneratorConfig | None = None,
    discriminator: DiscriminatorConfig | None = None,
    loss: GanLossConfig | None = None,
    *,
    name: str = "pix2pix",
) -> Pix2Pix:
    """Networks from configs, wrapped in a `Pix2Pix` (stage 3)."""
    generator = generator if generator is not None else GeneratorConfig()
    discriminator = discriminator if discriminator is not None else DiscriminatorConfig()
    return Pix2Pix(
        generator_from_config(generator, ndim, in_channels, out_channels, name="generator"),
        discriminator_from_config(discriminator, ndim, in_channels + out_channels, name="discriminator"),
        loss_config=loss,
        noise_channels=generator.noise_channels,
        name=name,
    )
