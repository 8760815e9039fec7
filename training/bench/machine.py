"""What a benchmark run ran on: CPU, GPU, library versions, threads, machine load."""

import datetime
import os
import platform
import time

import numpy as np


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def accelerator():
    """Name of the GPU the current backend computes on, or None."""
    import keras

    backend = keras.config.backend()
    try:
        if backend == "torch":
            import torch

            if torch.cuda.is_available():
                return torch.cuda.get_device_name(0)
        elif backend == "jax":
            import jax

            device = jax.devices()[0]
            if device.platform == "gpu":
                return getattr(device, "device_kind", str(device))
        elif backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                details = tf.config.experimental.get_device_details(gpus[0])
                return details.get("device_name", gpus[0].name)
    except Exception:  # a broken GPU runtime: report the CPU
        return None
    return None


def machine_info():
    import keras

    backend = keras.config.backend()
    module = {"jax": "jax", "tensorflow": "tensorflow", "torch": "torch"}.get(backend)
    try:
        backend_version = __import__(module).__version__
    except Exception:
        backend_version = None
    cpus = os.cpu_count()
    usable = usable_cpus()
    gpu = accelerator()
    cpu = f"{cpu_name()}, {usable} CPUs" + (f" (of {cpus})" if usable != cpus else "")
    threads = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "XLA_FLAGS") if k in os.environ}
    if backend == "torch":
        import torch

        threads["torch_intra_op"] = torch.get_num_threads()
    return {
        "backend": backend,
        "keras_version": keras.__version__,
        "backend_version": backend_version,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "device": gpu if gpu else cpu,
        "gpu": gpu,
        "cpu": cpu,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host_platform": platform.platform(),
        "cpus_usable": usable,
        "threads": threads,
        "load_average_start": load_average(),
    }


def usable_cpus():
    """CPUs this process may run on (its affinity), else all of the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


def load_average():
    """1/5/15-minute load averages of the machine (other processes skew CPU timings)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def cpu_busy_fraction(seconds=0.5):
    """Share of all CPUs busy during ``seconds`` while this process sleeps (other
    processes' load, from /proc/stat), or None."""
    def times():
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:9]]
        return sum(values), values[3] + values[4]  # total, idle + iowait

    try:
        total0, idle0 = times()
        time.sleep(seconds)
        total1, idle1 = times()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return round(1.0 - (idle1 - idle0) / (total1 - total0), 3)


def busy_note(meta):
    busy = [b for b in (meta.get("cpu_busy_at_start"), meta.get("cpu_busy_at_end"))
            if b is not None]
    cpus = meta.get("cpus_usable")
    if busy and not meta.get("gpu") and max(busy) > 0.25:
        note = (f"other processes kept {max(busy):.0%} of the {cpus} CPUs busy (measured at "
                "the start/end of the run): CPU timings are unreliable")
        if (meta.get("threads") or {}).get("torch_intra_op", 1) > 1:
            note += (" (torch's CPU threads slowed down 10-50x here when another process "
                     "held a core)")
        return note
    return None
