"""Model cards: what a zoo model is, what it costs, where each number came from, how to load it.

Rendered from the entry's index record only (plain data), so the card and the index always agree.
Every figure carries its provenance: counted analytically, measured (device and protocol) or
predicted (predictor and its held-out error), as the search run recorded it; or "not known".
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from nas.units import fmt_bytes, fmt_macs, fmt_ms, fmt_params
from nas.zoo.index import ARCH_FILE, CARD_FILE, ONNX_FILE, PLOT_FILE, WEIGHTS_FILE

NOT_KNOWN = "not known"


def _fmt_acc(acc: float | None) -> str:
    """As recorded (a fraction, a percentage or a proxy score: the provenance line says which)."""
    return NOT_KNOWN if acc is None else f"{acc:.4g}"


def _quote_path(p: str) -> str:
    return p.replace('"', '\\"')


def render_card(name: str, record: dict[str, Any], zoo: str | os.PathLike) -> str:
    """The Markdown card of entry ``name`` from its index record (checksums of the other files included)."""
    m = record.get("metrics", {})
    prov = record.get("provenance", {})
    src = record.get("source", {})
    w = record.get("weights", {})
    ox = record.get("onnx", {})
    files = record.get("files", {})
    shape = record.get("input_shape", [])
    zoo_str = _quote_path(str(zoo))
    lines: list[str] = []
    add = lines.append

    add(f"# {name}")
    add("")
    what = f"A `{record.get('space')}` backbone (arch `{record.get('id')}`)"
    if src.get("kind") == "run":
        what += (
            f" from the hardware-aware search `{src.get('study')}` on device `{src.get('device')}` "
            f"under the budget `{src.get('budget')}`"
        )
        here = next((r.get("device") for r in record.get("latency") or [] if r.get("device")), None)
        if here and here != src.get("device"):  # the search's profile was calibrated to the host that measured
            what += f" (that profile calibrated to the host of `{here}`, where the latency below was measured)"
    else:
        what += f", exported from the arch file `{src.get('arch_file')}` (no search run)"
    add(what + ".")
    add("It is a plain PyTorch `nn.Module` built by `nas.build`; no supernet code is needed to use it.")
    add("")
    add(f"Architecture: `{record.get('arch')}`")
    add("")
    add("| | | how obtained |")
    add("|---|---|---|")
    add(f"| input | {' x '.join(map(str, shape))} (batch first, any batch size) | space definition |")
    add(
        f"| parameters | {fmt_params(m['params'])} ({m['params']:,}) | {prov.get('params', 'counted analytically')} |"
    )
    add(f"| MACs | {fmt_macs(m['macs'])} | {prov.get('macs', 'counted analytically')} |")
    add(
        f"| memory (batch 1, fp32) | {fmt_bytes(m['memory'])} | {prov.get('memory', 'counted analytically')} |"
    )
    add("")

    add("## Latency")
    add("")
    lat = record.get("latency") or []
    if lat:
        add("| device | latency | how obtained |")
        add("|---|---|---|")
        for row in lat:
            value = fmt_ms(row["latency_ms"]) if row.get("latency_ms") is not None else NOT_KNOWN
            add(f"| {row.get('device') or NOT_KNOWN} | {value} | {row.get('provenance') or NOT_KNOWN} |")
        if src.get("feasible") is False:
            add("")
            add(f"**Outside the search's budget** (`{src.get('budget')}`): the run did not count this arch as "
                "feasible, and it is not on the run's front; it was exported because it was picked by id.")
    else:
        add(
            "Latency is not known: this entry was exported from an arch file, not from a search run, and was "
            "not measured. Measure it with `nas profile` on your device, or use the ONNX file below."
        )
    add("")

    add("## Accuracy")
    add("")
    if m.get("accuracy") is not None:
        if m.get("inherited_accuracy") is None:
            add(f"{_fmt_acc(m['accuracy'])}, {prov.get('accuracy') or 'provenance not recorded'}.")
        else:  # fine-tuned: both measured accuracies, on the same split, each with its provenance
            add("| weights | accuracy | how obtained |")
            add("|---|---|---|")
            add(f"| fine-tuned (the weights of this entry) | {_fmt_acc(m['accuracy'])} | {prov.get('accuracy')} |")
            add(f"| inherited from the supernet | {_fmt_acc(m['inherited_accuracy'])} | "
                f"{prov.get('inherited_accuracy') or 'provenance not recorded'} |")
            if m.get("estimated_accuracy") is not None:
                add(f"| the search's estimate | {_fmt_acc(m['estimated_accuracy'])} | "
                    f"{prov.get('estimated_accuracy') or 'provenance not recorded'} |")
        est = src.get("estimator") or {}
        if est.get("name"):
            if m.get("inherited_accuracy") is not None:
                add("")  # end the table
            add(
                f"Estimator of the search: `{est['name']}` ({est.get('provenance') or 'no provenance recorded'})."
            )
        if w.get("source") == "file":
            add(
                "Note: the weights come from a separately trained checkpoint; the accuracy above is the "
                "search's estimate for the arch, not a measurement of these weights."
            )
    elif m.get("score") is not None:  # the search ranked by a training-free score: say what it is worth
        est = src.get("estimator") or {}
        q = (est.get("quality") or {}).get("line")
        add(f"Accuracy is not known: no accuracy was measured or estimated for this arch. The search ranked it by "
            f"a score, {m['score']:.4g}: {prov.get('score') or est.get('provenance') or 'provenance not recorded'}"
            f"{'; ' + q if q else ''}.")
    else:
        add(
            "Accuracy is not known: "
            + (
                "the search run recorded none for this arch."
                if src.get("kind") == "run"
                else "this entry was exported from an arch file without a search run."
            )
        )
    rr = src.get("rerank") or {}
    if rr.get("name"):  # nas search --rerank: a second estimator chose the front among the search's best archs
        q = (rr.get("quality") or {}).get("line")
        add("")
        add(f"The front was chosen by a re-rank of the search's best archs: `{rr['name']}` "
            f"({rr.get('provenance') or 'no provenance recorded'}{'; ' + q if q else ''}).")
    add("")

    add("## Weights")
    add("")
    ft = w.get("finetune")
    if w.get("source") == "supernet" and ft:
        add(
            f"`{WEIGHTS_FILE}`: extracted from the weight-sharing supernet checkpoint `{w.get('path')}` "
            f"(SHA-256 of the checkpoint `{w.get('sha256') or 'n/a'}`), then fine-tuned for {ft.get('epochs')} "
            f"epoch(s) ({ft.get('steps')} steps, {ft.get('seconds')} s on {ft.get('device')}) on the "
            f"`{ft.get('data')}` training split: {ft.get('optimizer')}, lr {ft.get('lr')} ({ft.get('schedule')}), "
            f"batch {ft.get('batch_size')}, seed {ft.get('seed')}. These are the fine-tuned weights."
        )
    elif w.get("source") == "supernet":
        add(
            f"`{WEIGHTS_FILE}`: extracted from the weight-sharing supernet checkpoint `{w.get('path')}` "
            f"(SHA-256 of the checkpoint `{w.get('sha256') or 'n/a'}`); the subnet inherits the supernet's weights "
            "as they are (fine-tune them for best accuracy: `nas export ... --finetune EPOCHS`)."
        )
    elif w.get("source") == "file":
        add(f"`{WEIGHTS_FILE}`: from the trained checkpoint `{w.get('path')}` (SHA-256 `{w.get('sha256')}`).")
    else:
        add(
            "None: this is an **architecture-only** entry (no trained weights). Load it with "
            f'`create_model("{name}", pretrained=False)` to train it. Its `{ONNX_FILE}` holds randomly '
            f"initialised weights (seed {w.get('init_seed', 0)}): good for latency measurement and graph "
            "inspection, not for predictions."
        )
    add("")

    add("## ONNX")
    add("")
    if ox:
        per_batch = ", ".join(f"batch {b}: {float(d):.2g}" for b, d in (ox.get("max_abs_diff") or {}).items())
        add(
            f"`{ONNX_FILE}` is the fused (deploy) model: batch norms folded, re-parameterised branches merged. "
            f"Input `{ox.get('input_name', 'input')}` of shape [batch, {', '.join(map(str, shape))}] with a dynamic "
            f"batch dimension; opset {ox.get('opset')}, {ox.get('exporter')} exporter."
        )
        add(
            f"Checked against onnxruntime {ox.get('versions', {}).get('onnxruntime', '')} on random inputs: "
            f"max abs difference to PyTorch {per_batch} (tolerance {ox.get('atol')})."
        )
    add("")

    add("## Pareto front of the search")
    add("")
    if PLOT_FILE in files:
        add(f"![Pareto front]({PLOT_FILE})")
        if record.get("plot"):
            add("")
            add(record["plot"])
    elif src.get("kind") == "run":
        add("The run recorded no Pareto plot.")
    else:
        add("None: no search run.")
    add("")

    add("## How to load it")
    add("")
    add("```python")
    add("from nas.zoo import create_model")
    pre = "" if WEIGHTS_FILE in files else ", pretrained=False"
    add(f'model = create_model("{name}"{pre}, zoo="{zoo_str}")  # standard nn.Module, eval mode')
    add(
        "deploy = create_model(" + f'"{name}"{pre}, zoo="{zoo_str}", fuse=True)  # BN folded, branches merged'
    )
    add("```")
    add("")
    add("With onnxruntime:")
    add("")
    add("```python")
    add("import numpy as np, onnxruntime as ort")
    add(f'sess = ort.InferenceSession("{zoo_str}/{name}/{ONNX_FILE}", providers=["CPUExecutionProvider"])')
    add(f"x = np.random.rand(1, {', '.join(map(str, shape))}).astype(np.float32)")
    add('y = sess.run(None, {"input": x})[0]')
    add("```")
    add("")
    add(
        f"Check it: `nas zoo verify {name} --zoo {zoo_str}` (checksums and ONNX parity). With timm installed, "
        f'`nas.zoo.register_timm(zoo="{zoo_str}")` makes `timm.create_model("nas_{name}")` work.'
    )
    add("")

    add("## Files")
    add("")
    add("| file | SHA-256 |")
    add("|---|---|")
    for f in (ARCH_FILE, WEIGHTS_FILE, ONNX_FILE, PLOT_FILE):
        if f in files:
            add(f"| `{f}` | `{files[f]}` |")
    add(f"| `{CARD_FILE}` | recorded in the zoo's `index.yaml` |")
    add("")
    add(
        f"Exported {record.get('created')} with nas {record.get('nas_version')}, torch "
        f"{ox.get('versions', {}).get('torch', '')}, Python {platform.python_version()}."
    )
    return "\n".join(lines) + "\n"


def pareto_plot(summary: dict[str, Any], highlight_id: str, out: Path, title: str) -> str | None:
    """Draw the run's Pareto front (accuracy against latency, or MACs) with this model marked.

    Returns a one-line caption, or None when the run's Pareto entries lack the figures to draw.
    Uses matplotlib's object API (no pyplot state, Agg canvas).
    """
    pts = summary.get("pareto") or []
    metrics = [p.get("metrics") or {} for p in pts]
    if not metrics or any(mm.get("accuracy") is None for mm in metrics):
        return None
    if all(mm.get("latency_ms") is not None for mm in metrics):
        xkey, xlabel = "latency_ms", f"latency (ms) on {summary.get('device')}"
    elif all(mm.get("macs") is not None for mm in metrics):
        xkey, xlabel = "macs", "MACs (M)"
    else:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    scale = 1e-6 if xkey == "macs" else 1.0
    xs = [float(mm[xkey]) * scale for mm in metrics]
    ys = [float(mm["accuracy"]) for mm in metrics]
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    fig = Figure(figsize=(5, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([xs[i] for i in order], [ys[i] for i in order], "-o", color="#4477aa", ms=4, label="Pareto front")
    hi = [i for i, p in enumerate(pts) if p.get("id") == highlight_id]
    for i in hi:
        ax.plot([xs[i]], [ys[i]], "*", color="#cc3311", ms=14, label="this model")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(str(out), format="png")
    return (
        f"Accuracy against {'latency' if xkey == 'latency_ms' else 'MACs'} of the {len(pts)} Pareto-optimal "
        f"archs of study `{summary.get('study')}` ({'this model marked' if hi else 'this model not on the front'}); "
        f"provenance as in the tables above."
    )
