import keras
import pytest
import tensorflow as tf

from nucgen_tf import runtime


@pytest.fixture(autouse=True)
def _restore_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("name", ["float32", "mixed_float16", "mixed_bfloat16"])
def test_explicit_precision_sets_the_policy(name):
    assert runtime.set_precision(name) == name
    assert keras.mixed_precision.global_policy().name == name


def test_mixed_on_cpu_follows_native_bf16(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text("flags : fpu sse avx2 avx512f avx512_bf16\n")
    assert runtime.cpu_has_native_bfloat16(str(info))
    info.write_text("flags : fpu sse avx2\n")
    assert not runtime.cpu_has_native_bfloat16(str(info))
    monkeypatch.setattr(runtime, "cpu_has_native_bfloat16", lambda: False)
    assert runtime.set_precision("mixed") == "float32"
    monkeypatch.setattr(runtime, "cpu_has_native_bfloat16", lambda: True)
    assert runtime.set_precision("mixed") == "mixed_bfloat16"


def test_bad_precision_and_strategy_names():
    with pytest.raises(ValueError, match="precision"):
        runtime.set_precision("half")
    with pytest.raises(ValueError, match="strategy"):
        runtime.make_strategy("tpu")


def test_multiworker_needs_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        runtime.make_strategy("multiworker")


def test_mirrored_strategy_on_cpu():
    assert isinstance(runtime.make_strategy("mirrored"), tf.distribute.MirroredStrategy)
    assert runtime.make_strategy("default") is tf.distribute.get_strategy()
