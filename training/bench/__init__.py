"""The benchmark behind ``training/benchmark.py`` (the command line and its help).

Modules, one job each:

- `core`: constants, error capture, the benchmark modes, timing, the model cache;
- `data`: synthetic clouds and the packed ``.npz`` test-set format;
- `machine`: what the run ran on (CPU, GPU, versions, load);
- `memory`: peak-memory probes (RSS high-water mark, device allocators, XLA);
- `worker`: one configuration measured in a fresh process;
- `sections`: the ``train``, ``infer``, ``jit`` and ``memory`` sections;
- `solvers`: the ``solvers`` section (Euler vs Anderson on a checkpoint);
- `tables`: markdown tables of one or more saved runs.
"""
