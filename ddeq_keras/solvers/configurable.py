"""What the small solver and adjoint objects share: a config and a readable repr."""


class Configurable:
    """``get_config`` (the constructor's arguments), ``from_config`` and ``repr``."""

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"
