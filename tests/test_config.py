"""The settings' allowed values and the rules that combine settings (daah_tf/config.py): the
dataclasses and the command line refuse the same settings, and the command line answers
`--help` without loading TensorFlow."""

import dataclasses
import json
import os
import subprocess
import sys
import time

import pytest

from daah_tf import config
from daah_tf.config import DataConfig, ModelConfig, RunConfig, TrainConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(REPO, "flags", "smoke.cfg")


def run_train(*args):
    return subprocess.run([sys.executable, "-m", "daah_tf.train", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------------------------------------
# The dataclasses


def test_defaults_are_valid_and_round_trip():
    default = RunConfig()
    assert RunConfig.from_json(default.to_json()) == default


def test_setting_names_are_unique_across_the_parts():
    names = [field.name for kind in (DataConfig, ModelConfig, TrainConfig)
             for field in dataclasses.fields(kind)]
    assert len(names) == len(set(names))
    assert set(config.CHOICES) <= set(names)
    assert all(set(rule.settings) <= set(names) for rule in config.RULES)


@pytest.mark.parametrize("build, message", [
    (lambda: ModelConfig(update="sometimes"), "model.update must be one of"),
    (lambda: ModelConfig(retrieval_view="sideways"), "model.retrieval_view must be one of"),
    (lambda: ModelConfig(text_retrieval_view="sideways"),
     "model.text_retrieval_view must be one of"),
    (lambda: DataConfig(dataset="imagenet"), "data.dataset must be one of"),
    (lambda: TrainConfig(distribution="tpu"), "train.distribution must be one of"),
    (lambda: ModelConfig(loss="dcmh"),
     "model.loss=dcmh is the attention-free baseline: add model.attention=none"),
    (lambda: ModelConfig(loss="dcmh", attention="none", center_weight=1.0),
     "model.quantization_weight, model.binary_ranking_share and model.center_weight are terms "
     "of model.loss=daah"),
    (lambda: ModelConfig(image_weights="imagenet"),
     "model.image_weights is for model.image_backbone=vgg19|"),
    (lambda: TrainConfig(logical_cpu_devices=2),
     "train.logical_cpu_devices is for train.distribution=mirrored"),
    (lambda: RunConfig(data=DataConfig(feature_cache="/tmp/cache")),
     "data.feature_cache needs model.image_backbone=precomputed"),
    (lambda: RunConfig(data=DataConfig(dataset="wiki", data_dir="/tmp")),
     "data.dataset=wiki gives image feature vectors: use model.image_backbone=precomputed"),
])
def test_bad_settings_are_refused_naming_the_setting(build, message):
    with pytest.raises(ValueError) as error:
        build()
    assert message in str(error.value)


def test_agreeing_settings_are_accepted():
    ModelConfig(loss="dcmh", attention="none", center_weight=0.0)
    ModelConfig(image_backbone="vgg19", image_weights="imagenet")
    TrainConfig(distribution="mirrored", logical_cpu_devices=2)
    RunConfig(data=DataConfig(dataset="wiki", feature_cache="/tmp/cache"),
              model=ModelConfig(image_backbone="precomputed"))
    DataConfig(dataset="wiki")  # its folder may come later (load_dataset checks it)


def test_a_stored_config_that_breaks_a_rule_is_refused():
    text = RunConfig().to_json().replace('"loss": "daah"', '"loss": "dcmh"')
    with pytest.raises(ValueError, match="model.loss=dcmh"):
        RunConfig.from_json(text)


def test_a_config_saved_before_a_setting_existed_keeps_that_runs_behaviour():
    # Runs saved before --text_linear_path, --center_weight and --cnn_pool_last_block were
    # written without them and trained without them (or, the last, with a pooled last block):
    # restoring one must rebuild that network, not today's default.
    saved = json.loads(RunConfig().to_json())
    for name in config.ABSENT_MEANS["model"]:
        del saved["model"][name]
    old = RunConfig.from_json(json.dumps(saved))
    assert old.model.text_linear_path is False and old.model.center_weight == 0.0
    assert old.model.cnn_pool_last_block is True
    assert old.model.bits == ModelConfig().bits  # the rest: today's defaults, as before
    today = RunConfig.from_json(RunConfig().to_json())
    assert today.model.text_linear_path is True and today.model.center_weight == 1.0
    assert today.model.cnn_pool_last_block is False


def test_old_modules_keep_their_names():
    from daah_tf.data.registry import DATASETS

    assert DATASETS is config.DATASETS


# ---------------------------------------------------------------------------------------------
# The command line


def test_flags_define_no_tensorflow():
    code = ("import sys, daah_tf.train, daah_tf.flags; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_help_is_quick_and_lists_the_flags():
    started = time.perf_counter()
    result = run_train("--help")
    seconds = time.perf_counter() - started
    assert "--retrieval_view" in result.stdout and "--flagfile" not in result.stderr
    assert "--bits" in result.stdout and "--model_dir" in result.stdout
    assert result.stderr == ""
    assert seconds < 10  # about 0.3 s idle; generous for a busy machine


@pytest.mark.parametrize("flags, rule", [
    (["--dataset=wiki"], config.DATA_DIR_GIVEN),
    (["--feature_cache=/tmp/x"], config.CACHE_NEEDS_PRECOMPUTED),
    (["--image_weights=imagenet"], config.WEIGHTS_NEED_PRETRAINED),
    (["--dataset=wiki", "--data_dir=/tmp"], config.WIKI_IS_VECTORS),
    (["--logical_cpu_devices=2"], config.LOGICAL_DEVICES_NEED_MIRRORED),
    (["--loss=dcmh"], config.DCMH_WITHOUT_ATTENTION),
    (["--loss=dcmh", "--attention=none", "--center_weight=1"], config.DAAH_TERMS_NEED_DAAH_LOSS),
    (["--loss=dcmh", "--attention=none"], config.DAAH_TERMS_NEED_DAAH_LOSS),  # C is on by default
])
def test_the_command_line_refuses_with_the_rules_message(tmp_path, flags, rule):
    result = run_train(f"--flagfile={SMOKE}", f"--model_dir={tmp_path / 'run'}", *flags)
    assert result.returncode != 0
    assert rule.explain(lambda name: f"--{name}") in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("environment, level", [
    ({}, "2"),  # quiet by default
    ({"DAAH_VERBOSE": "1"}, None),  # TensorFlow's own default: every log
    ({"DAAH_VERBOSE": "0"}, "2"),
    ({"TF_CPP_MIN_LOG_LEVEL": "0"}, "0"),  # an explicit level is kept
])
def test_quiet_sets_the_tensorflow_log_level(environment, level):
    code = "import os, daah_tf.quiet; print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'))"
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "DAAH_VERBOSE")}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=60, env={**env, **environment})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(level)
