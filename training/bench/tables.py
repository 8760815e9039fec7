"""Markdown tables of one or more benchmark runs (e.g. one per backend).

`format_tables` takes the JSON of the runs and gives one table per section, one
column per run, then the list of failed configurations.
"""

import math

from training.bench.core import MODES, ok
from training.bench.machine import busy_note


def fmt_s(x):
    if x is None:
        return "-"
    if x < 1e-3:
        return f"{x * 1e6:.0f} us"
    if x < 1:
        return f"{x * 1e3:.3g} ms"
    return f"{x:.3g} s"


def fmt_num(x, digits=3):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def fmt_ratio(x):
    return "-" if x is None else f"{x:.2f}x"


def cell(entry, fn):
    """A table cell: ``fn(entry)``, "error" for a failed configuration, "-" if absent."""
    if entry is None:
        return "-"
    if isinstance(entry, dict) and "error" in entry:
        return "error (see below)"
    try:
        return fn(entry)
    except (KeyError, TypeError):
        return "-"


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def run_label(result):
    meta = result.get("meta", {})
    devices = meta.get("data_parallel_devices", 1)
    return (meta.get("backend", "?") + (f", {devices} devices" if devices > 1 else "")
            + (" (smoke)" if meta.get("smoke") else ""))


def collect_errors(obj, path, errors):
    if isinstance(obj, dict):
        if "error" in obj and isinstance(obj["error"], str):
            errors.append((path, obj["error"]))
            return
        for k, v in obj.items():
            collect_errors(v, f"{path} {k}" if path else str(k), errors)


def _ordered(iterables):
    seen = []
    for it in iterables:
        for k in it or ():
            if k not in seen:
                seen.append(k)
    return seen


def _runs_list(labels, results):
    parts = ["Runs:"]
    for label, r in zip(labels, results):
        m = r.get("meta", {})
        parts.append(f"- {label}: Keras {m.get('keras_version')}, {m.get('backend')} "
                     f"{m.get('backend_version')}, {m.get('device')}, {m.get('date')}"
                     + (f"; data parallel over {m['data_parallel_devices']} devices"
                        if m.get("data_parallel_devices", 1) > 1 else "")
                     + ("; SMOKE RUN: tiny sizes, numbers not representative"
                        if m.get("smoke") else ""))
        if busy_note(m):
            parts.append(f"  - WARNING: {busy_note(m)}")
    return parts


def _section_header(secs, name, describe):
    seen = [s[name] for s in secs if isinstance(s.get(name), dict)]
    if not seen:
        return None
    return f"\n### {describe(seen[0])}\n"


def _per_model_rows(secs, section, key, fmt, ratio_label, ratio_key):
    """Rows of a per-model, per-mode section (train, infer) and its ratio row."""
    rows = []
    for name in _ordered(s.get(section, {}).get("models", {}) for s in secs):
        es = [s.get(section, {}).get("models", {}).get(name) for s in secs]
        modes = [m for m in MODES if any(m in (e or {}).get("modes", {}) for e in es)]
        for mode in modes:  # a run with --train-modes "" has none
            rows.append([name, mode] + [
                cell(e, lambda e, mode=mode: (fmt(e["modes"][mode][key])
                                              if ok(e["modes"][mode]) else "error (see below)")
                     if mode in e["modes"] else "-") for e in es])
        if len(modes) == len(MODES):
            rows.append([name, ratio_label] + [
                cell(e, lambda e: fmt_ratio(e.get(ratio_key))) for e in es])
    return rows


def _train_table(secs, labels):
    rows = _per_model_rows(secs, "train", "step_s", fmt_s, "**reference / default**",
                           "ratio_reference_over_default")
    for name in _ordered(s.get("train", {}).get("models", {}) for s in secs):
        es = [s.get("train", {}).get("models", {}).get(name) for s in secs]
        solvers = _ordered((e or {}).get("solvers", {}) for e in es)
        for solver in solvers:
            rows.append([name, f"solver {solver}: s per step / evals per sample / converged"] + [
                cell(e, lambda e, solver=solver: _solver_cell(e["solvers"][solver]))
                for e in es])
        if solvers:
            rows.append([name, "**euler / anderson (s per step)**"] + [
                cell(e, lambda e: fmt_ratio(e.get("ratio_euler_over_anderson"))) for e in es])
    rows.append(["", "jit_compile (resolved)"] + [
        cell(s.get("train"), lambda t: str(t.get("jit_compile_resolved"))) for s in secs])
    return markdown_table(["model", "mode"] + labels, rows)


def _solver_cell(entry):
    if not ok(entry):
        return "error (see below)"
    evals = entry.get("evals_per_sample")
    share = entry.get("converged_share")
    return (f"{fmt_s(entry['step_s'])} / {fmt_num(evals) if evals is not None else '-'} / "
            f"{f'{share:.0%}' if share is not None else '-'}")


def _infer_table(secs, labels):
    rows = _per_model_rows(secs, "infer", "clouds_per_s", fmt_num, "**default / reference**",
                           "ratio_default_over_reference")
    return markdown_table(["model", "mode"] + labels, rows)


def _jit_table(secs, labels):
    rows = []
    for key in ("jit_compile=True", "jit_compile=False"):
        rows.append([key] + [cell(s.get("jit", {}).get("settings", {}).get(key),
                                  lambda e: fmt_s(e["step_s"])) for s in secs])
    rows.append(["**False / True**"] + [
        cell(s.get("jit"), lambda j: fmt_ratio(j.get("ratio_false_over_true"))) for s in secs])
    return markdown_table(["setting"] + labels, rows)


def _memory_table(secs, labels):
    rows = []
    backwards = _ordered(s.get("memory", {}).get("results", {}) for s in secs)
    for bw in backwards:
        rs = [s.get("memory", {}).get("results", {}).get(bw) for s in secs]
        steps = _ordered([k for k in (r or {}) if k.isdigit()] for r in rs)
        for k in sorted(steps, key=int):
            rows.append([bw, f"{k} steps"] + [
                cell((r or {}).get(k), lambda e: fmt_num(e["peak_mib"], 4)) for r in rs])
        ratio_keys = _ordered([k for k in (r or {}) if k.startswith("ratio_")] for r in rs)
        for rk in ratio_keys:
            hi, lo = rk[len("ratio_"):].split("_over_")
            rows.append([bw, f"**{hi} / {lo}**"] + [
                cell(r, lambda r: fmt_ratio(r.get(rk))) for r in rs])
    trained = [s.get("memory", {}).get("training_steps", {}).get("models", {}) for s in secs]
    for name in _ordered(trained):
        rows.append([f"full-size step: {name}", "MiB / s per step"] + [
            cell(t.get(name), lambda e: f"{fmt_num(e['peak_mib'], 4)} / {fmt_s(e['step_s'])}")
            for t in trained])
    rows.append(["", "method"] + [cell(s.get("memory"), lambda m: str(m.get("method")))
                                  for s in secs])
    return markdown_table(["backward", "flow steps"] + labels, rows)


def _solver_rows(label, sv):
    """Rows of one run's solvers section."""
    if "error" in sv:
        return [[label, "-", "error (see below)"] + ["-"] * 6]
    rows = []
    cap = sv.get("max_steps")
    for solver, e in sv.get("results", {}).items():
        if not ok(e):
            rows.append([label, solver, "error (see below)"] + ["-"] * 6)
            continue
        if e["converged_share"] < 0.5:
            evals = (f"> {cap} (not converged for "
                     f"{1 - e['converged_share']:.0%})")
        else:
            evals = (f"{fmt_num(e['evals_mean_converged'])} / "
                     f"{fmt_num(e['evals_median_converged'])} / "
                     f"{fmt_num(e['evals_p90_converged'])}")
        rows.append([label, solver, f"{e['accuracy']:.4f}",
                     f"{e['converged_share']:.1%}", evals,
                     f"{e['rel_mmd_final_mean']:.3g}", fmt_s(e["batch_s"]),
                     e.get("evaluations_source", ""), ""])
    h = sv.get("euler_vs_anderson")
    if h:
        if h.get("meaningful"):
            txt = (f"**{h['ratio_mean_evals_euler_over_anderson']:.2f}x** (over the "
                   f"{h['samples_both_converged']} clouds both converged on)")
        elif h.get("ratio_mean_evals_lower_bound") is not None:
            txt = (f"**>= {h['ratio_mean_evals_lower_bound']:.0f}x** (lower bound: "
                   f"Euler not converged for {1 - h['euler_converged_share']:.0%} "
                   f"within {cap} steps, Anderson converged for all)")
        else:
            txt = (f"not meaningful: converged Euler {h['euler_converged_share']:.0%}, "
                   f"Anderson {h['anderson_converged_share']:.0%} (cap {cap})")
        rows.append([label, "**Euler / Anderson evals**", "", "", txt, "", "", "",
                     f"{h['prediction_agreement']:.1%}"])
    return rows


def _solvers_table(secs, labels):
    rows = []
    for label, s in zip(labels, secs):
        if s.get("solvers") is not None:
            rows += _solver_rows(label, s["solvers"])
    return markdown_table(
        ["run", "solver", "accuracy", "converged", "evals mean / median / p90 (converged)",
         "mean rel. MMD^2", "s per batch", "evals from", "same prediction"], rows)


# Section -> (title from the first run's entry, table of all runs).
_TABLES = {
    "train": (lambda s: (
        f"Training step (s per `train_on_batch`, median of {s.get('repeats')}), batch "
        f"{s.get('batch_size')}, {s.get('flow_steps')} flow steps (tol=0)"), _train_table),
    "infer": (lambda s: (
        f"Inference (clouds per second, `predict_on_batch`, median of {s.get('repeats')}), "
        f"batch {s.get('batch_size')}, {s.get('flow_steps')} flow steps (tol=0)"),
        _infer_table),
    "jit": (lambda s: (
        f"Training step with jit_compile=True vs False: {s.get('model')} {s.get('mode')}, "
        f"batch {s.get('batch_size')}, {s.get('flow_steps')} flow steps"), _jit_table),
    "memory": (lambda s: (
        f"Peak memory of one training step (MiB), batch {s.get('batch_size')}: "
        + (f"{s.get('model')} at flow steps {s.get('steps')} (tol=0)" if s.get("steps")
           else "")
        + (("; " if s.get("steps") else "") + "full-size steps of "
           f"{s['training_steps']['solver']}, {s['training_steps']['max_steps']} steps, "
           f"{s['training_steps']['backward']} backward" if s.get("training_steps") else "")),
        _memory_table),
    "solvers": (lambda s: (
        f"Solvers in inference: {s.get('solver_model')}, {s.get('num_examples')} test clouds, "
        f"tol {s.get('tol')} ({s.get('stopping')}, per sample), cap {s.get('max_steps')} "
        f"steps, check_every {s.get('check_every')}, Euler eta {s.get('euler_eta')}, batch "
        f"{s.get('batch_size')}" + (f"; {s['note']}" if s.get("note") else "")),
        _solvers_table),
}


def format_tables(results):
    """Markdown tables of one or more runs (e.g. one per backend), one column per run."""
    if isinstance(results, dict):
        results = [results]
    labels = [run_label(r) for r in results]
    secs = [r.get("sections", {}) for r in results]
    parts = _runs_list(labels, results)
    for name, (describe, table) in _TABLES.items():
        head = _section_header(secs, name, describe)
        if head:
            parts += [head, table(secs, labels)]

    errors = []
    for label, r in zip(labels, results):
        collect_errors(r.get("sections", {}), label, errors)
    if errors:
        parts.append("\nErrors:")
        parts += [f"- {path}: {msg.splitlines()[0][:300] if msg else ''}"
                  for path, msg in errors]
    return "\n".join(parts)
