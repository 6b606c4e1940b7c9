"""Data analysis tasks: simulate, hit a bug, fix it, plot, answer (``run_python`` only).

Written for the benchmark: each task is a user's request and the turns a capable open model
writes for it. Every call runs in a fresh process, so a fix turn writes the whole program again.
One program per task fails partway (a ``KeyError``, a shape mismatch, a wrong axis), after real
work; the others run cleanly, print their results and save their figures to the working
directory. The programs live in :mod:`.task_data_analysis_programs`. Example::

    >>> [len(t.turns) for t in ANALYSIS.tasks]
    [5, 7, 3]
    >>> sum("savefig" in turn for t in ANALYSIS.tasks for turn in t.turns)
    3
"""

from __future__ import annotations

from .task_data_analysis_programs import AB, QUEUE, SENSOR
from .task_model import Family, Task
from .transcripts import hermes

__all__ = ["ANALYSIS"]


def _py(text: str, code: str) -> str:
    return hermes(text, ("run_python", {"code": code}))


AB_POWER = Task("analysis", "ab_power", (
    "We're planning an A/B test of a new checkout page. Baseline conversion is about 4.0% and "
    "we want to detect a 10% relative lift (4.0% to 4.4%) with 80% power at alpha = 0.05. How "
    "many visitors per arm do we need? We'd also like to read the result per device: mobile is "
    "60% of traffic and converts at 3.1%, desktop converts at 5.2%. Please check it by "
    "simulation rather than only a formula, and plot the power curves."), (
    _py("I'll simulate many experiments for a range of sample sizes, run a two-proportion "
        "z-test on each, and estimate the power overall and for each device.", AB["sim"]),
    _py("The overall power curve worked, but I stored the per-device results under (device, n) "
        "tuples and then read them as a nested dict. Here is the corrected program, which also "
        "reports the total traffic each device needs.", AB["fixed"]),
    _py("As a quick cross-check, the normal-approximation formula for the sample size:",
        AB["formula"]),
    _py("The simulation and the formula agree. Now the power curves, overall and per device, "
        "saved to ab_power.png.", AB["plot"]),
    ("You need about 40,000 visitors per arm (80,000 in total) to detect a lift from 4.0% to "
     "4.4% with 80% power at alpha = 0.05: the simulation (50,000 experiments per sample size) "
     "reaches 80.5% at 40,000, and the normal-approximation formula gives 39,475. Reading the "
     "result per device costs much more traffic: mobile, with its lower 3.1% baseline, needs "
     "about 87,500 visitors per arm in total (52,500 of them on mobile) before its own test "
     "reaches 80% power, and desktop about 75,000 (the formula gives 85,700 and 74,900). At the "
     "overall 40,000 per arm the device-level tests have only 48% and 53% power, as the curves "
     "in ab_power.png show. So if the per-device readout is a decision criterion, plan for "
     "about 87,500 per arm, a bit more than twice the overall requirement; otherwise treat the "
     "device split as exploratory.")),
)

QUEUE_STAFFING = Task("analysis", "queue_staffing", (
    "Our support desk gets about 120 tickets an hour at the afternoon peak, and handling a "
    "ticket takes 22 minutes on average (skewed: most are quick, some take over an hour). How "
    "many agents do we need on shift so that the average wait stays under 2 minutes and 90% "
    "of tickets are picked up within 5 minutes? Please simulate it, and tell me how sensitive "
    "the answer is to busier days."), (
    _py("The offered load is 120/h x 22 min = 44 agents' worth of work, so I'll simulate a "
        "first-come-first-served queue with lognormal handling times for 45 to 56 agents.",
        QUEUE["sim"]),
    _py("The per-agent results are in, but the per-hour breakdown compared the trimmed waits "
        "(warm-up removed) with the untrimmed arrival times. Fixed, the whole program again:",
        QUEUE["fixed"]),
    _py("A quick sanity check against the Erlang C formula, which assumes exponential handling "
        "times, so it will not match exactly:", QUEUE["erlang"]),
    _py("The simulation is in line with Erlang C. Now the chart: mean wait and the share "
        "picked up within 5 minutes against the number of agents.", QUEUE["plot"]),
    _py("Now the sensitivity: 10% more tickets, and handling times 2 minutes longer.",
        QUEUE["sensitivity"]),
    _py("Last, how busy the agents are at the recommended staffing:", QUEUE["occupancy"]),
    ("You need 49 agents on shift at the peak: with 49 the simulated average wait is 1.1 "
     "minutes and 92.9% of tickets are picked up within 5 minutes, while 48 agents give 1.7 "
     "minutes but only 88.6% within 5 minutes, which misses the second target. Erlang C gives "
     "the same picture but is slightly more pessimistic (88.5% within 5 minutes at 49), because "
     "it assumes exponential handling times, which vary more than yours. Even at 49 agents, "
     "about 10% of the simulated hours fall below 80% within 5 minutes, when bursts of long "
     "tickets arrive together. The answer is sensitive because the desk runs close to capacity "
     "(occupancy 89.8% at 49 agents): 10% more tickets need 54 agents, 24-minute handling times "
     "53, and both together 59. I would plan 49 agents on a normal peak, 54 on the busiest days "
     "or a few people on call; the chart is in queue_staffing.png.")),
)

SENSOR_DRIFT = Task("analysis", "sensor_drift", (
    "We have 40 temperature sensors in a warehouse, logged hourly for 120 days next to a "
    "calibrated reference probe, and I suspect a few of them are drifting. Can you simulate a "
    "data set like ours (daily cycle, noise, a few drifting sensors), build a method that "
    "flags the drifting ones, check how well it finds them, and plot the result?"), (
    _py("I'll simulate the readings, compute each sensor's daily mean error against the "
        "reference, and fit a linear trend per sensor to flag drift.", SENSOR["sim"]),
    _py("The daily means were taken over the wrong axis (the hours of the day instead of the "
        "days), so the trend fit got 24 points per sensor instead of 120. Corrected, with the "
        "detection, its evaluation and the plot:", SENSOR["fixed"]),
    ("The method flags 4 of the 40 sensors (7, 11, 32 and 35), all of them truly drifting, "
     "with no false alarms; it misses the two slowest of the six simulated drifts, sensor 16 "
     "(+0.007 C a day) and sensor 37 (-0.010 C a day), whose trends are hidden by the slow "
     "wander that every sensor has. It averages each sensor's error against the reference over "
     "each day, which removes the daily cycle, fits a linear trend per sensor and flags slopes "
     "more than 4 robust standard deviations (median and MAD) from the fleet. The flagged "
     "sensors drift by 0.018-0.023 C a day, about 2-3 C over the 120 days. The bootstrap "
     "intervals in drift.png are too narrow, because resampling days ignores that the wander "
     "makes consecutive days correlated; a block bootstrap would be more honest. Lowering the "
     "threshold to 2.5 would catch sensor 16 at the risk of false alarms, so on your data I "
     "would rerun it monthly and watch sensors that stay near the threshold.")),
)

ANALYSIS = Family(
    name="analysis", title="Data analysis", kinds=("run_python",),
    tasks=(AB_POWER, QUEUE_STAFFING, SENSOR_DRIFT),
    system=(
        "You are a data analyst with a Python sandbox. run_python(code) runs a complete "
        "program in a fresh process with numpy and matplotlib (use the Agg backend and save "
        "figures to PNG files in the working directory); nothing persists between calls, there "
        "is no network and no pandas. Seed every random generator, print the numbers you "
        "need, fix errors by sending the whole corrected program, and finish with a plain "
        "summary of the results."),
    note=("Every call is a fresh process and the quick checks run in a fraction of a second, "
          "so those turns leave little to overlap with decoding beyond starting the "
          "interpreter."),
)
