"""The two players' optimizers of `DAAH.compile`: made from its arguments, and written to and
read from the compile config of a `.keras` file.

There is no Keras-level `optimizer`: fit would build it over *all* variables, mixing the
players. Each player has its own, over its own variables (`DAAH.hash_variables`,
`DAAH.attention_variables`), both saved in checkpoints and `.keras` files.
"""

import keras


def make(hash_optimizer, attention_optimizer, dtype_policy):
    """(hash optimizer, attention optimizer) from compile's arguments.

    Args:
        hash_optimizer, attention_optimizer: optimizer instances, names ("adam") or configs,
            as `keras.optimizers.get` takes them.
        dtype_policy: the model's `keras.DTypePolicy`. Under "mixed_float16" both optimizers
            are wrapped in a LossScaleOptimizer (named "hash_optimizer", "attention_optimizer"):
            each player's loss is scaled by its own optimizer before its gradients are taken.
    """
    players = []
    for name, optimizer in (("hash_optimizer", hash_optimizer),
                            ("attention_optimizer", attention_optimizer)):
        optimizer = keras.optimizers.get(optimizer)
        if dtype_policy.name == "mixed_float16" and not isinstance(
                optimizer, keras.optimizers.LossScaleOptimizer):
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer, name=name)
        players.append(optimizer)
    return tuple(players)


def inner(optimizer):
    """The optimizer that holds the learning rate: a LossScaleOptimizer's inner one, else itself."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def compile_config(model):
    """The compile config of a compiled DAAH model (None before compile)."""
    if model.hash_optimizer is None:
        return None
    return {
        "hash_optimizer": keras.optimizers.serialize(model.hash_optimizer),
        "attention_optimizer": keras.optimizers.serialize(model.attention_optimizer),
        "jit_compile": bool(model.jit_compile),
        "on_nonfinite": model.on_nonfinite,
    }


def compile_arguments(config):
    """The keyword arguments of `DAAH.compile` from a `compile_config`."""
    return dict(
        hash_optimizer=keras.optimizers.deserialize(config["hash_optimizer"]),
        attention_optimizer=keras.optimizers.deserialize(config["attention_optimizer"]),
        jit_compile=config.get("jit_compile", False),
        on_nonfinite=config.get("on_nonfinite", "stop"),
    )
