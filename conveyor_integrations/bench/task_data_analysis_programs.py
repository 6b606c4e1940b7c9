"""The ``run_python`` programs of :mod:`.task_data_analysis`, by task and turn.

Written for the benchmark, as a model writes them: numpy and matplotlib, seeded, printing their
results. ``AB["sim"]``, ``QUEUE["sim"]`` and ``SENSOR["sim"]`` fail partway (a ``KeyError``, a
length mismatch, a wrong axis); the next program of each task is the whole program, fixed.
Example::

    >>> sorted(AB)
    ['fixed', 'formula', 'plot', 'sim']
"""

from __future__ import annotations

from .task_data_queue_programs import QUEUE

__all__ = ["AB", "QUEUE", "SENSOR"]

_AB_HEAD = """\
import numpy as np

rng = np.random.default_rng(2024)
z_crit = 1.959963984540054          # two-sided alpha = 0.05
target = 0.80
sims = 50_000


def simulate_power(p_a, p_b, n, sims, rng):
    \"\"\"Share of simulated experiments where a two-proportion z-test rejects.\"\"\"
    conv_a = rng.binomial(n, p_a, size=sims)
    conv_b = rng.binomial(n, p_b, size=sims)
    pooled = (conv_a + conv_b) / (2 * n)
    se = np.sqrt(pooled * (1 - pooled) * 2 / n)
    z = (conv_b - conv_a) / n / se
    return np.mean(np.abs(z) > z_crit)


# Overall test: 4.0% baseline, 10% relative lift
sizes = np.arange(10_000, 150_001, 2_500)
overall = {}
for n in sizes:
    overall[int(n)] = simulate_power(0.040, 0.044, int(n), sims, rng)
for n in (20_000, 30_000, 40_000, 50_000, 60_000):
    print(f"n = {n:>6} per arm: power {overall[n]:.3f}")
needed = min(n for n, power in overall.items() if power >= target)
print(f"overall: smallest n per arm with power >= 80%: {needed:,}")

# Per device: each device gets its share of the traffic of each arm
devices = {"mobile": (0.60, 0.031), "desktop": (0.40, 0.052)}
"""

_AB_SIM = _AB_HEAD + """\
by_device = {}
for device, (share, base) in devices.items():
    for n in sizes:
        n_dev = int(n * share)
        by_device[device, int(n)] = simulate_power(base, base * 1.10, n_dev, sims, rng)

for device, (share, base) in devices.items():
    first = min(n for n in overall if by_device[device][n] >= target)
    print(f"{device}: power >= 80% from n = {first:,} per arm "
          f"({int(first * share):,} {device} visitors per arm)")
"""

_AB_FIXED = _AB_HEAD + """\
by_device = {device: {} for device in devices}
for device, (share, base) in devices.items():
    for n in sizes:
        n_dev = int(n * share)
        by_device[device][int(n)] = simulate_power(base, base * 1.10, n_dev, sims, rng)

for device, (share, base) in devices.items():
    enough = [n for n in overall if by_device[device][n] >= target]
    if not enough:
        print(f"{device}: power stays below 80% up to {sizes[-1]:,} per arm")
        continue
    first = min(enough)
    print(f"{device}: power >= 80% from n = {first:,} per arm "
          f"({int(first * share):,} {device} visitors per arm)")
    print(f"  at the overall n = {needed:,}: power {by_device[device][needed]:.3f}")
"""

_AB_FORMULA = """\
from math import ceil, sqrt

z_a, z_b = 1.959964, 0.841621         # alpha = 0.05 two-sided, power = 0.80
for label, p1, share in (("overall", 0.040, 1.0), ("mobile", 0.031, 0.6),
                         ("desktop", 0.052, 0.4)):
    p2 = p1 * 1.10
    p_bar = (p1 + p2) / 2
    n = (z_a * sqrt(2 * p_bar * (1 - p_bar)) + z_b * sqrt(p1 * (1 - p1) + p2 * (1 - p2))) ** 2
    n /= (p2 - p1) ** 2
    print(f"{label:>8}: {ceil(n):>7,} per arm -> {ceil(n / share):>7,} total visitors per arm")
"""

_AB_PLOT = _AB_HEAD.replace("sims = 50_000", "sims = 20_000") + """\
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

curves = {"overall": [overall[int(n)] for n in sizes]}
for device, (share, base) in devices.items():
    curves[device] = [simulate_power(base, base * 1.10, int(n * share), sims, rng)
                      for n in sizes]

fig, ax = plt.subplots(figsize=(7, 4.5))
for label, power in curves.items():
    ax.plot(sizes / 1000, power, marker="o", ms=3, label=label)
ax.axhline(target, color="gray", ls="--", lw=1)
ax.axvline(needed / 1000, color="gray", ls=":", lw=1)
ax.set_xlabel("visitors per arm (thousands)")
ax.set_ylabel("power")
ax.set_ylim(0, 1)
ax.set_title("Power to detect a 10% relative lift")
ax.legend()
fig.tight_layout()
fig.savefig("ab_power.png", dpi=120)
print("saved ab_power.png")
"""

AB: dict[str, str] = {"sim": _AB_SIM, "fixed": _AB_FIXED, "formula": _AB_FORMULA,
                      "plot": _AB_PLOT}
"""The A/B power task: the failing simulation, the fix, a formula check, the plot."""

_SENSOR_HEAD = """\
import numpy as np

rng = np.random.default_rng(5)
n_sensors, days = 40, 120
hours = np.arange(days * 24)

# The reference probe: seasonal trend, daily cycle, weather noise
reference = (14 + 3 * np.sin(2 * np.pi * hours / (24 * 365)) + 2.5
             * np.sin(2 * np.pi * (hours % 24 - 9) / 24)
             + np.cumsum(rng.normal(0, 0.05, hours.size)))

# Each sensor: its own offset, noise and slow wander, a lag on the daily cycle; a few drift
offset = rng.normal(0, 0.3, n_sensors)
noise = rng.uniform(0.1, 0.35, n_sensors)
drift_per_day = np.zeros(n_sensors)
drifting = rng.choice(n_sensors, size=6, replace=False)
drift_per_day[drifting] = rng.choice([-1, 1], 6) * rng.uniform(0.004, 0.03, 6)
wander = np.repeat(np.cumsum(rng.normal(0, 0.03, (n_sensors, days)), axis=1), 24, axis=1)
lagged = np.roll(reference, 1)
readings = (0.8 * reference + 0.2 * lagged + offset[:, None] + wander
            + drift_per_day[:, None] * hours / 24
            + rng.normal(0, 1, (n_sensors, hours.size)) * noise[:, None])
readings[rng.random(readings.shape) < 0.002] = np.nan        # dropped readings
print(f"readings {readings.shape}, missing {np.isnan(readings).mean():.2%}")
print("drifting sensors (truth):", sorted(drifting.tolist()))

error = readings - reference
print(f"mean absolute error over all sensors: {np.nanmean(np.abs(error)):.3f} C")
"""

_SENSOR_SIM = _SENSOR_HEAD + """\

# Daily mean error per sensor, then a linear trend per sensor
daily = np.nanmean(error.reshape(n_sensors, days, 24), axis=1)
day = np.arange(days)
slope, intercept = np.polyfit(day, daily.T, 1)
print("slopes (C/day):", np.round(slope, 4))
"""

_SENSOR_FIXED = _SENSOR_HEAD + """\
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

# Daily mean error per sensor (average over the 24 hours), then a linear trend per sensor
daily = np.nanmean(error.reshape(n_sensors, days, 24), axis=2)
day = np.arange(days)
slope, intercept = np.polyfit(day, daily.T, 1)

# Flag slopes far from the fleet, with a robust z-score (median and MAD)
mad = 1.4826 * np.median(np.abs(slope - np.median(slope)))
z = (slope - np.median(slope)) / mad
flagged = np.flatnonzero(np.abs(z) > 4)
truth = set(drifting.tolist())
hits = truth & set(flagged.tolist())
print("flagged:", flagged.tolist())
print(f"found {len(hits)} of {len(truth)} drifting sensors, "
      f"{len(flagged) - len(hits)} false alarms")
for s in sorted(truth - hits):
    print(f"missed sensor {s}: true drift {drift_per_day[s]:+.4f} C/day, z = {z[s]:.1f}")

# Bootstrap over days: 95% intervals for every sensor's slope
boot = np.empty((2000, n_sensors))
for b in range(2000):
    idx = np.sort(rng.integers(0, days, days))
    boot[b] = np.polyfit(day[idx], daily[:, idx].T, 1)[0]
low, high = np.percentile(boot, [2.5, 97.5], axis=0)
for s in flagged:
    print(f"sensor {s:>2}: slope {slope[s]:+.4f} C/day [{low[s]:+.4f}, {high[s]:+.4f}]")

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
order = np.argsort(slope)
colors = ["crimson" if s in flagged else "steelblue" for s in order]
ax1.errorbar(np.arange(n_sensors), slope[order], fmt="none", ecolor="gray",
             yerr=[slope[order] - low[order], high[order] - slope[order]])
ax1.scatter(np.arange(n_sensors), slope[order], c=colors, zorder=3)
ax1.set_xlabel("sensor (sorted by slope)")
ax1.set_ylabel("drift (C/day)")
ax1.set_title("Trend of the daily mean error")
for s in flagged:
    ax2.plot(day, daily[s], label=f"sensor {s}")
ax2.plot(day, np.median(daily, axis=0), color="black", lw=2, label="fleet median")
ax2.set_xlabel("day")
ax2.set_ylabel("daily mean error (C)")
ax2.legend(fontsize=8)
fig.tight_layout()
fig.savefig("drift.png", dpi=120)
print("saved drift.png")
"""

SENSOR: dict[str, str] = {"sim": _SENSOR_SIM, "fixed": _SENSOR_FIXED}
"""The drift task: the simulation that averages over the wrong axis, then the fix and plot."""
