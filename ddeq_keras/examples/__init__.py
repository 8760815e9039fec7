"""Small runnable examples."""

__all__ = ["toy_equilibrium"]
