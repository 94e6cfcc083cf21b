"""One look for every figure: a method keeps its colour, marker and line style everywhere.

Colours are the Okabe-Ito palette (Okabe & Ito 2008, "Color Universal Design"), safe for the
common forms of colour blindness; every method also gets its own marker and, past eight methods,
line style, so a figure printed in black and white still tells the methods apart. The assignment
follows the registry's order (``methods.list_methods``), so it does not depend on which methods a
figure happens to show.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display needed; must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402

OKABE_ITO = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#D55E00", "#0072B2", "#CC79A7",
             "#F0E442")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p", "d", "H")
LINESTYLES = ("-", "--", ":", "-.")
GROUP_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7")  # favoured group first
GROUP_HATCHES = ("", "//", "..", "xx")
METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None}, "svg": {"Date": None}}
matplotlib.rcParams["svg.hashsalt"] = "dps-bench"  # the same figure gives the same file
RANDOM = "random"  # the retraining baseline: always black, dashed, no marker choice clash


def method_style(method: str) -> dict:
    """matplotlib keyword arguments (color, marker, linestyle) for ``method`` (a row label such
    as ``bads (sigma=1)`` takes its method's colour and marker)."""
    from methods import list_methods

    method = method.split(" (", 1)[0]
    if method == RANDOM:
        return {"color": "#777777", "marker": "x", "linestyle": "--"}
    names = list(list_methods())
    i = names.index(method) if method in names else len(names) + sum(map(ord, method))
    return {"color": OKABE_ITO[i % len(OKABE_ITO)], "marker": MARKERS[i % len(MARKERS)],
            "linestyle": LINESTYLES[(i // len(OKABE_ITO)) % len(LINESTYLES)]}


def plain_log_axis(ax, which: str = "x", ticks=None) -> None:
    """A log axis labelled with plain numbers (``0.5``, ``2``, ``10``), not ``2×10⁰``;
    ``ticks`` sets the labelled values (e.g. the swept ones)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    if ticks is not None:
        axis.set_major_locator(FixedLocator(sorted(set(ticks))))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def new_figure(panels: int, width: float = 4.2, height: float = 3.2, columns: int | None = None):
    """(figure, flat list of axes) for ``panels`` panels in a grid."""
    columns = columns or min(panels, 3)
    rows = -(-panels // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows),
                             squeeze=False, layout="constrained")
    flat = list(axes.flat)
    for ax in flat[panels:]:
        ax.set_visible(False)
    return fig, flat[:panels]


def save(fig, folder, name: str, formats: list[str]) -> dict:
    """Save ``fig`` as folder/name.<format> for each format; returns {format: path}."""
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for fmt in formats:
        path = folder / f"{name}.{fmt}"
        fig.savefig(path, dpi=110, metadata=METADATA.get(fmt))
        files[fmt] = path
    plt.close(fig)
    return files
