"""Plumbing shared by the layers (and the baseline models): configs, sub-layers.

A layer lists the attributes that make up its config in ``config_fields``;
`ConfigFieldsMixin.get_config` serialises them by kind (see `config_value`),
so that no class repeats the same ``get_config`` body.
"""

import keras


def serialize(obj):
    """`keras.saving.serialize_keras_object` (JSON-able form of a Keras object)."""
    return keras.saving.serialize_keras_object(obj)


def clone_initializer(initializer):
    """A fresh initializer object (sub-layers must not share seeded instances)."""
    initializer = keras.initializers.get(initializer)
    return initializer.__class__.from_config(initializer.get_config())


def sublayer_options(owner):
    """Constructor arguments that a sub-layer takes over from ``owner``.

    Fresh copies of ``owner``'s ``kernel_initializer`` and
    ``bias_initializer``, its dtype policy, and its ``use_bias`` (True where
    it has none).
    """
    return dict(
        use_bias=getattr(owner, "use_bias", True),
        kernel_initializer=clone_initializer(owner.kernel_initializer),
        bias_initializer=clone_initializer(owner.bias_initializer),
        dtype=owner.dtype_policy,
    )


def dense(owner, units, activation=None, name=None):
    """A ``Dense`` sub-layer of ``owner`` (see `sublayer_options`)."""
    return keras.layers.Dense(units, activation=activation, name=name, **sublayer_options(owner))


def dropout_rate(value, name):
    """``float(value)``, checked to be a dropout rate in [0, 1)."""
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"`{name}` must be in [0, 1); received {value}.")
    return float(value)


def config_value(value):
    """The config form of an attribute value.

    Initializers are serialised as Keras objects, other callables (the
    activations) by `keras.activations.serialize`, tuples become lists (as
    JSON would give them back), and everything else is kept as it is.
    """
    if isinstance(value, keras.initializers.Initializer):
        return serialize(value)
    if isinstance(value, (tuple, list)):
        return [config_value(v) for v in value]
    if callable(value):
        return keras.activations.serialize(value)
    return value


class ConfigFieldsMixin:
    """``get_config`` from the attribute names in ``config_fields``.

    Put it before the Keras base class: ``class L(ConfigFieldsMixin,
    keras.layers.Layer)``. Subclasses extend the tuple, e.g.
    ``config_fields = Base.config_fields + ("units",)``.
    """

    config_fields = ()

    def get_config(self):
        config = super().get_config()
        config.update({name: config_value(getattr(self, name)) for name in self.config_fields})
        return config
