"""The ``run_python`` programs of the queue staffing task (:mod:`.task_data_analysis`).

Written for the benchmark, as a model writes them (numpy and matplotlib, seeded): ``QUEUE["sim"]``
fails partway (trimmed waits against untrimmed arrivals); ``QUEUE["fixed"]`` is the whole
program, fixed. Example::

    >>> sorted(QUEUE)
    ['erlang', 'fixed', 'occupancy', 'plot', 'sensitivity', 'sim']
"""

from __future__ import annotations

__all__ = ["QUEUE"]

_QUEUE_HEAD = """\
import heapq
import numpy as np

rng = np.random.default_rng(11)
rate_per_min = 120 / 60              # tickets per minute at the peak
mean_handle, sigma = 22.0, 0.8       # lognormal handling time, minutes
mu = np.log(mean_handle) - sigma ** 2 / 2
n_tickets, warmup = 120_000, 2_000   # drop the first tickets while the queue fills


def simulate(agents, arrivals, handle):
    \"\"\"First come, first served with ``agents`` servers; the wait of each ticket.\"\"\"
    free = [0.0] * agents            # when each agent is next free (a heap)
    waits = np.empty(len(arrivals))
    for i, (t, h) in enumerate(zip(arrivals.tolist(), handle.tolist())):
        start = max(t, heapq.heappop(free))
        waits[i] = start - t
        heapq.heappush(free, start + h)
    return waits


arrivals = np.cumsum(rng.exponential(1 / rate_per_min, n_tickets))
handle = rng.lognormal(mu, sigma, n_tickets)
print(f"simulated {n_tickets:,} tickets over {arrivals[-1] / 60:.0f} hours, "
      f"mean handling {handle.mean():.1f} min, p95 {np.percentile(handle, 95):.1f} min")

results = {}
print("agents  mean wait  p90 wait  within 5 min")
for agents in range(45, 57):
    waits = simulate(agents, arrivals, handle)[warmup:]
    results[agents] = waits
    print(f"{agents:>6}  {waits.mean():>9.2f}  {np.percentile(waits, 90):>8.2f}"
          f"  {np.mean(waits <= 5):>11.1%}")

ok = [a for a, w in results.items() if w.mean() < 2 and np.mean(w <= 5) >= 0.9]
best = min(ok)
print(f"fewest agents meeting both targets: {best}")

# How the service level varies over the simulated period, hour by hour
"""

_QUEUE_SIM = _QUEUE_HEAD + """\
hours = (arrivals // 60).astype(int)
within = results[best] <= 5
per_hour = np.bincount(hours, weights=within) / np.bincount(hours)
print(f"worst hour: {per_hour.min():.1%} within 5 minutes, best {per_hour.max():.1%}")
print(f"hours below 80%: {np.sum(per_hour < 0.8)} of {len(per_hour)}")
"""

_QUEUE_FIXED = _QUEUE_HEAD + """\
hours = (arrivals[warmup:] // 60).astype(int)
hours -= hours[0]
within = results[best] <= 5
per_hour = np.bincount(hours, weights=within) / np.bincount(hours)
print(f"worst hour: {per_hour.min():.1%} within 5 minutes, best {per_hour.max():.1%}")
print(f"hours below 80%: {np.sum(per_hour < 0.8)} of {len(per_hour)}")
"""

_QUEUE_ERLANG = """\
from math import exp, factorial

load = 120 / 60 * 22.0                  # offered load in Erlangs
for agents in range(45, 57):
    top = load ** agents / factorial(agents) * agents / (agents - load)
    bottom = sum(load ** k / factorial(k) for k in range(agents)) + top
    p_wait = top / bottom
    mean_wait = p_wait * 22.0 / (agents - load)
    within5 = 1 - p_wait * exp(-(agents - load) * 5 / 22.0)
    print(f"{agents}: P(wait) {p_wait:.3f}, mean wait {mean_wait:.2f} min, "
          f"within 5 min {within5:.1%}")
"""

_QUEUE_PLOT = _QUEUE_HEAD.replace(
    "# How the service level varies over the simulated period, hour by hour\n", "") + """\
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

agents = np.array(sorted(results))
mean_wait = np.array([results[a].mean() for a in agents])
within5 = np.array([np.mean(results[a] <= 5) for a in agents])

fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(13, 4))
ax1.plot(agents, mean_wait, marker="o")
ax1.axhline(2, color="red", ls="--", lw=1, label="target: 2 min")
ax1.set_yscale("log")
ax1.set_xlabel("agents on shift")
ax1.set_ylabel("mean wait (min)")
ax1.legend()
ax2.plot(agents, within5 * 100, marker="o", color="seagreen")
ax2.axhline(90, color="red", ls="--", lw=1, label="target: 90%")
ax2.set_xlabel("agents on shift")
ax2.set_ylabel("picked up within 5 min (%)")
ax2.legend()
waits = results[best]
ax3.hist(waits[waits > 0], bins=60, color="gray")
ax3.set_title(f"{best} agents: waits of the {np.mean(waits > 0):.0%} who wait")
ax3.set_xlabel("wait (min)")
fig.tight_layout()
fig.savefig("queue_staffing.png", dpi=120)
print("saved queue_staffing.png")
"""

_QUEUE_SENSITIVITY = """\
import heapq
import numpy as np

rng = np.random.default_rng(12)
sigma, n_tickets, warmup = 0.8, 60_000, 2_000


def simulate(agents, arrivals, handle):
    free = [0.0] * agents
    waits = np.empty(len(arrivals))
    for i, (t, h) in enumerate(zip(arrivals.tolist(), handle.tolist())):
        start = max(t, heapq.heappop(free))
        waits[i] = start - t
        heapq.heappush(free, start + h)
    return waits[warmup:]


for label, per_hour, mean_handle in (("base", 120, 22.0), ("+10% tickets", 132, 22.0),
                                     ("24 min handling", 120, 24.0), ("both", 132, 24.0)):
    arrivals = np.cumsum(rng.exponential(60 / per_hour, n_tickets))
    handle = rng.lognormal(np.log(mean_handle) - sigma ** 2 / 2, sigma, n_tickets)
    agents = int(per_hour / 60 * mean_handle) + 1
    while True:
        waits = simulate(agents, arrivals, handle)
        if waits.mean() < 2 and np.mean(waits <= 5) >= 0.9:
            break
        agents += 1
    print(f"{label:>16}: {agents} agents (mean wait {waits.mean():.2f} min, "
          f"{np.mean(waits <= 5):.1%} within 5 min)")
"""

_QUEUE_OCCUPANCY = """\
for agents in (49, 50, 51, 52):
    print(f"{agents} agents: occupancy {120 / 60 * 22.0 / agents:.1%}")
"""

QUEUE: dict[str, str] = {"sim": _QUEUE_SIM, "fixed": _QUEUE_FIXED, "erlang": _QUEUE_ERLANG,
                         "plot": _QUEUE_PLOT, "sensitivity": _QUEUE_SENSITIVITY,
                         "occupancy": _QUEUE_OCCUPANCY}
"""The staffing task: the failing simulation, the fix, Erlang C, the plot, two checks."""
