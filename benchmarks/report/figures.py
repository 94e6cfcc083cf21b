"""The report's figures, each drawn from tidy frames (never from a model).

Every function takes frames already reduced by ``build.py`` and returns a matplotlib figure (or
None when there is nothing to draw); ``style.save`` writes it. A method's colour, marker and line
style come from ``style.method_style`` in every figure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .style import GROUP_COLOURS, GROUP_HATCHES, method_style, new_figure, plain_log_axis


def _legend(fig, axes) -> None:
    handles, labels = {}, {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles[label], labels[label] = h, label
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize=8,
                   frameon=False)


def cost_figure(table: pd.DataFrame, metric: str, title: str):
    """Final metric against time per step and against peak memory per step, one marker per method
    (error bars: std over seeds). ``table``: method, final_mean, final_std, time_ms, peak_mb."""
    rows = table.dropna(subset=["final_mean", "time_ms"])
    if rows.empty:
        return None
    fig, (ax_t, ax_m) = new_figure(2, width=4.0, height=3.3)
    for r in rows.itertuples(index=False):
        st = method_style(r.method)
        for ax, x in ((ax_t, r.time_ms), (ax_m, r.peak_mb)):
            if pd.notna(x):
                ax.errorbar(x, r.final_mean, yerr=0 if pd.isna(r.final_std) else r.final_std,
                            color=st["color"], marker=st["marker"], markersize=7, capsize=2,
                            linestyle="none", label=r.method)
    ax_t.set_xlabel("time per step (ms, median)")
    ax_m.set_xlabel("peak memory per step (MB)")
    for ax in (ax_t, ax_m):
        ax.set_ylabel(f"final test {metric}")
        plain_log_axis(ax)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    _legend(fig, [ax_t])
    return fig


def curves_figure(curves: pd.DataFrame, metric: str, title: str):
    """Test metric against step: per setting a panel, per method the mean over seeds and a band of
    ± one standard deviation. ``curves``: setting, method, seed, step, value (test split)."""
    if curves.empty:
        return None
    from .build import natural

    settings = sorted(dict.fromkeys(curves["setting"]), key=natural)
    fig, axes = new_figure(len(settings), width=4.6, height=3.4)
    for ax, setting in zip(axes, settings, strict=True):
        part = curves[curves["setting"] == setting]
        for method, rows in part.groupby("method", sort=False):
            stats = rows.groupby("step")["value"].agg(["mean", "std", "count"]).reset_index()
            st = method_style(method)
            ax.plot(stats["step"], stats["mean"], color=st["color"], linestyle=st["linestyle"],
                    marker=st["marker"], markevery=max(1, len(stats) // 5), markersize=4,
                    linewidth=1.2, label=method)
            std = stats["std"].fillna(0)
            ax.fill_between(stats["step"], stats["mean"] - std, stats["mean"] + std,
                            color=st["color"], alpha=0.12, linewidth=0)
        ax.set_title(setting, fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel(f"test {metric}")
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    _legend(fig, axes)
    return fig


def meta_size_figure(table: pd.DataFrame, metric: str, title: str):
    """Final metric against meta examples per class, a line per method and a panel per base
    setting (source, profile; error bars: std over seeds). ``table``: base, method,
    meta_per_class, final_mean, final_std."""
    if table.empty or table["meta_per_class"].nunique() < 2:
        return None
    bases = list(dict.fromkeys(table["base"]))
    fig, axes = new_figure(len(bases), width=5.2, height=3.6)
    for ax, base in zip(axes, bases, strict=True):
        part = table[table["base"] == base]
        for method, rows in part.groupby("method", sort=False):
            rows = rows.sort_values("meta_per_class")
            ax.errorbar(rows["meta_per_class"], rows["final_mean"],
                        yerr=rows["final_std"].fillna(0), capsize=2, label=method,
                        **method_style(method))
        plain_log_axis(ax, ticks=part["meta_per_class"].astype(float))
        ax.set_xlabel("meta examples per class (|Dm| / classes)")
        ax.set_ylabel(f"final test {metric}")
        ax.grid(alpha=0.3)
        ax.set_title(base, fontsize=9)
    fig.suptitle(title, fontsize=10)
    _legend(fig, axes)
    return fig


def _groups(frame: pd.DataFrame) -> list[str]:
    """Group names, the favoured group first (it is drawn in the first group colour)."""
    from .quality import FAVOURED_GROUPS

    groups = list(dict.fromkeys(frame["group"].astype(str)))
    return sorted(groups, key=lambda g: (g not in FAVOURED_GROUPS, groups.index(g)))


def group_weights_figure(frame: pd.DataFrame, title: str):
    """Mean weight per group over training, a panel per method (mean over seeds).
    ``frame``: method, group, step, value."""
    if frame.empty:
        return None
    methods = list(dict.fromkeys(frame["method"]))
    fig, axes = new_figure(len(methods), width=3.6, height=2.8, columns=4)
    groups = _groups(frame)
    for ax, method in zip(axes, methods, strict=True):
        part = frame[frame["method"] == method]
        for g, group in enumerate(groups):
            rows = part[part["group"] == group].groupby("step")["value"].mean()
            if len(rows):
                ax.plot(rows.index, rows.to_numpy(), color=GROUP_COLOURS[g % 4],
                        linestyle=("-", "--", ":", "-.")[g % 4], marker="os^D"[g % 4],
                        markevery=max(1, len(rows) // 5), markersize=4, label=group)
        ax.set_title(method, fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("mean weight")
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    _legend(fig, axes)
    return fig


def weight_histograms(frame: pd.DataFrame, title: str):
    """Histogram of final weights by group (each group's own density, pooled over seeds), a
    panel per method. ``frame``: method, group, weight."""
    frame = frame.dropna(subset=["weight"])
    if frame.empty:
        return None
    methods = list(dict.fromkeys(frame["method"]))
    groups = _groups(frame)
    fig, axes = new_figure(len(methods), width=3.6, height=2.8, columns=4)
    for ax, method in zip(axes, methods, strict=True):
        part = frame[frame["method"] == method]
        low, high = part["weight"].min(), part["weight"].max()
        if high - low <= 1e-9 * max(abs(high), 1e-12):  # every weight equal: say so, no bars
            ax.text(0.5, 0.5, f"every weight = {high:.4g}", ha="center", va="center",
                    transform=ax.transAxes)
            ax.set_title(method, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        edges = np.linspace(low, high, 31)
        for g, group in enumerate(groups):
            w = part.loc[part["group"] == group, "weight"].to_numpy()
            if len(w):
                ax.hist(w, bins=edges, density=True, histtype="step", linewidth=1.4,
                        color=GROUP_COLOURS[g % 4], hatch=GROUP_HATCHES[g % 4], label=group)
        ax.set_title(method, fontsize=9)
        ax.set_xlabel("final weight")
        ax.set_ylabel("density")
        ax.set_yscale("symlog", linthresh=1e-3)
    fig.suptitle(title, fontsize=10)
    _legend(fig, axes)
    return fig


def gradient_shares_figure(frame: pd.DataFrame, title: str):
    """BADS: the data term's and the prior's shares of φ's gradient over training (mean over
    seeds), a panel per method. ``frame``: method, step, data_share."""
    if frame.empty:
        return None
    methods = list(dict.fromkeys(frame["method"]))
    fig, axes = new_figure(len(methods), width=3.8, height=2.9)
    for ax, method in zip(axes, methods, strict=True):
        rows = frame[frame["method"] == method].groupby("step")["data_share"].mean()
        ax.plot(rows.index, rows.to_numpy(), color=GROUP_COLOURS[0], marker="o", markersize=3,
                label="data term")
        ax.plot(rows.index, 1 - rows.to_numpy(), color=GROUP_COLOURS[1], linestyle="--",
                marker="s", markersize=3, label="prior")
        ax.set_yscale("log")
        ax.set_title(method, fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("share of ‖∇φ‖")
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    _legend(fig, axes)
    return fig


def retrain_figure(table: pd.DataFrame, metric: str, title: str):
    """Retraining on the selection: final metric against the fraction of Dt kept, a line per
    method's weights and the random baseline (error bars: std over seeds).
    ``table``: setting, method, fraction, final_mean, final_std."""
    if table.empty:
        return None
    from .build import natural

    settings = sorted(dict.fromkeys(table["setting"]), key=natural)
    fig, axes = new_figure(len(settings), width=4.4, height=3.3)
    for ax, setting in zip(axes, settings, strict=True):
        part = table[table["setting"] == setting]
        for method, rows in part.groupby("method", sort=False):
            rows = rows.sort_values("fraction")
            ax.errorbar(rows["fraction"] * 100, rows["final_mean"], yerr=rows["final_std"].fillna(0),
                        capsize=2, label=method, **method_style(method))
        plain_log_axis(ax, ticks=part["fraction"] * 100)
        ax.set_xlabel("% of Dt kept (highest weights)")
        ax.set_ylabel(f"test {metric}, retrained")
        ax.set_title(setting, fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    _legend(fig, axes)
    return fig


def sensitivity_figure(table: pd.DataFrame, metric: str, title: str):
    """Final metric against each swept hyperparameter (log axis), a panel per hyperparameter.
    ``table``: method, param, value, final_mean, final_std, default (bool)."""
    if table.empty:
        return None
    params = list(dict.fromkeys(table["param"]))
    fig, axes = new_figure(len(params), width=4.0, height=3.2)
    for ax, param in zip(axes, params, strict=True):
        for method, rows in table[table["param"] == param].groupby("method", sort=False):
            rows = rows.sort_values("value")
            st = method_style(method)
            ax.errorbar(rows["value"], rows["final_mean"], yerr=rows["final_std"].fillna(0),
                        capsize=2, label=method, **st)
            default = rows[rows["default"]]
            ax.scatter(default["value"], default["final_mean"], s=140, facecolors="none",
                       edgecolors=st["color"], linewidths=1.2, label="default")
        plain_log_axis(ax, ticks=table.loc[table["param"] == param, "value"])
        ax.set_xlabel(param)
        ax.set_ylabel(f"final test {metric}")
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    _legend(fig, axes)
    return fig
