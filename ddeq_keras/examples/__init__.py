"""Small runnable examples and the main job's pieces.

- `main_job`: ``python -m ddeq_keras`` (the pretrained model, used and fine-tuned);
- `figures`: clouds with their particles at the start and at the equilibrium;
- `shapes`: the bundled folder of point sets the main job fine-tunes on;
- `toy_equilibrium`: a small DDEQ trained from scratch on synthetic sets.
"""

__all__ = ["figures", "main_job", "shapes", "toy_equilibrium"]
