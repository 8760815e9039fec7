"""Peak-memory probes for one training step.

On CPU: the process's resident set size (the kernel's high-water mark, reset
before the step where possible). On a GPU: the device allocator's peak, and on
JAX XLA's own account of the compiled step.
"""

import gc
import sys
import threading

from training.bench.core import MIB
from training.bench.machine import accelerator


def _proc_status_kb(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_mib():
    kb = _proc_status_kb("VmRSS")
    if kb is not None:
        return kb / 1024.0
    try:
        import psutil

        return psutil.Process().memory_info().rss / MIB
    except Exception:
        return None


def lifetime_peak_rss_mib():
    kb = _proc_status_kb("VmHWM")
    if kb is not None:
        return kb / 1024.0
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024.0


def release_free_heap():
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
        return True
    except Exception:
        return False


class PeakRSS:
    """Peak RSS of the process during a block: the kernel's high-water mark reset at
    entry (``/proc/self/clear_refs``), else RSS sampled every millisecond, else the
    lifetime ``ru_maxrss``. ``.method`` says which."""

    def __enter__(self):
        self.peak = None
        self._stop = None
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.method = "VmHWM reset before the step"
        except OSError:
            if rss_mib() is not None:
                self.method = "RSS sampled every 1 ms during the step"
                self._samples = [rss_mib()]
                self._stop = threading.Event()
                self._thread = threading.Thread(target=self._sample, daemon=True)
                self._thread.start()
            else:
                self.method = "ru_maxrss: process lifetime, not isolated"
        return self

    def _sample(self):
        while not self._stop.wait(0.001):
            self._samples.append(rss_mib())

    def __exit__(self, *exc):
        if self._stop is not None:
            self._stop.set()
            self._thread.join()
            self._samples.append(rss_mib())
            self.peak = max(self._samples)
        else:
            self.peak = lifetime_peak_rss_mib()
        return False


def gpu_memory_probe(backend):
    """(reset, read) functions for the device allocator's peak bytes, and a method name,
    or None on CPU."""
    if accelerator() is None:
        return None
    if backend == "torch":
        import torch

        def reset():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return torch.cuda.memory_allocated()

        def read():
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated()

        return reset, read, "gpu: torch.cuda.max_memory_allocated (reset before the step)"
    if backend == "jax":
        import jax

        device = jax.devices()[0]

        def reset():
            return device.memory_stats().get("bytes_in_use")

        def read():
            return device.memory_stats()["peak_bytes_in_use"]

        return reset, read, ("gpu: jax memory_stats()['peak_bytes_in_use'] (process "
                             "lifetime; the warm-up ran the same step)")
    if backend == "tensorflow":
        import tensorflow as tf

        def reset():
            tf.config.experimental.reset_memory_stats("GPU:0")
            return tf.config.experimental.get_memory_info("GPU:0")["current"]

        def read():
            return tf.config.experimental.get_memory_info("GPU:0")["peak"]

        return reset, read, "gpu: tf get_memory_info('GPU:0')['peak'] (reset before the step)"
    return None


def xla_step_memory(model, x, y):
    """Device bytes of the compiled JAX train step, by XLA's buffer assignment: the
    arguments (weights, optimizer and metric state, batch), outputs and temporaries,
    less what outputs reuse of the (donated) arguments. Compiles the step once more."""
    import jax

    state = model._get_jax_state(trainable_variables=True, non_trainable_variables=True,
                                 optimizer_variables=True, metrics_variables=True,
                                 purge_model_variables=False)
    compiled = jax.jit(model.train_step, donate_argnums=0).lower(state, (x, y, None)).compile()
    analysis = compiled.memory_analysis()
    if analysis is None:
        raise RuntimeError("this JAX runtime gives no memory analysis")
    fields = {k: int(getattr(analysis, k + "_size_in_bytes"))
              for k in ("argument", "output", "alias", "temp", "generated_code")}
    fields["step_bytes"] = (fields["argument"] + fields["output"] + fields["temp"]
                            - fields["alias"])
    return fields


def finished_train_step(model, x, y):
    """``model.train_on_batch(x, y)`` that returns only once the step has run, and
    raises if it failed.

    Keras turns the logs into floats and silently keeps any value it cannot
    convert; on JAX the step runs asynchronously, so a step that failed (XLA
    refusing a 28 GB buffer) came back at once, looking fast and small.
    Materialising every log value waits for the step and raises its error.
    """
    import keras

    logs = model.train_on_batch(x, y, return_dict=True)
    for value in logs.values():
        if not isinstance(value, (int, float)):
            keras.ops.convert_to_numpy(value)
    return logs


