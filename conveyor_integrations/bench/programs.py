"""CodeGen transcripts: data-analysis programs that import numpy and matplotlib and compute for
real, written as a model writes them (a sentence, then one ``run_python`` call). Each saves a figure
and takes a few seconds of tool time, about as long as decoding it at 50 tokens/s on this machine.
The programs are ours, written for the benchmark; they are data, so they are plain strings."""

from __future__ import annotations

__all__ = ["INTROS", "PROGRAMS"]

INTROS: dict[str, str] = {
    'portfolio_risk': (
        "I'll estimate the portfolio's one-year risk with a Monte Carlo simulation and plot the distribution of outcomes."),
    'house_prices': (
        'Let me fit a linear model of price on area and age, bootstrap confidence intervals for the coefficients, and test whether age matters.'),
    'heat_plate': (
        "I'll simulate heat diffusion on the plate with fixed and with insulated edges, "
        "and plot both fields and a temperature profile."),
}
"""The sentence before the call, per program."""

PROGRAMS: dict[str, str] = {}
"""The ``code`` argument of each transcript, by name."""

PROGRAMS['portfolio_risk'] = """\
import numpy as np
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

# One year of daily returns for a three-asset portfolio, 60,000 scenarios
rng = np.random.default_rng(42)
weights = np.array([0.5, 0.3, 0.2])
mean = np.array([0.0004, 0.0003, 0.0002])
cov = np.array([[1.0e-4, 2.0e-5, 1.0e-5],
                [2.0e-5, 8.0e-5, 1.5e-5],
                [1.0e-5, 1.5e-5, 5.0e-5]])
returns = rng.multivariate_normal(mean, cov, size=(60000, 252))
portfolio = returns @ weights
growth = np.cumprod(1.0 + portfolio, axis=1)
final = growth[:, -1]
var_95 = 1.0 - np.quantile(final, 0.05)
print(f"median growth {np.median(final):.4f}, 95% VaR {var_95:.2%}")

# Maximum drawdown of every scenario
peaks = np.maximum.accumulate(growth, axis=1)
drawdown = (1.0 - growth / peaks).max(axis=1)
print(f"mean max drawdown {drawdown.mean():.2%}")

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
ax1.hist(final, bins=80, color="steelblue")
ax1.axvline(1.0 - var_95, color="red", ls="--", label="5% quantile")
ax1.set_title("Portfolio value after one year")
ax1.legend()
ax2.hist(drawdown, bins=80, color="darkorange")
ax2.set_title("Maximum drawdown")
fig.tight_layout()
fig.savefig("portfolio_risk.png", dpi=120)
print("saved portfolio_risk.png")
"""

PROGRAMS['house_prices'] = """\
import numpy as np
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

# Synthetic house prices: price depends on area and age, with noise
rng = np.random.default_rng(7)
n = 5000
area = rng.uniform(40, 220, n)
age = rng.uniform(0, 80, n)
price = 1800 * area - 950 * age + rng.normal(0, 25000, n) + 60000
X = np.column_stack([np.ones(n), area, age])
coef, *_ = np.linalg.lstsq(X, price, rcond=None)
print("fit: intercept %.0f, per m2 %.1f, per year %.1f" % tuple(coef))

# Bootstrap 95% confidence intervals for the coefficients
boot = np.empty((16000, 3))
for b in range(16000):
    idx = rng.integers(0, n, n)
    boot[b], *_ = np.linalg.lstsq(X[idx], price[idx], rcond=None)
low, high = np.percentile(boot, [2.5, 97.5], axis=0)
for name, lo, hi in zip(["intercept", "area", "age"], low, high):
    print(f"{name:>9}: [{lo:10.1f}, {hi:10.1f}]")

# Permutation test: does age matter once area is known?
observed = abs(coef[2])
count = 0
for _ in range(6000):
    shuffled = X.copy()
    shuffled[:, 2] = rng.permutation(age)
    perm, *_ = np.linalg.lstsq(shuffled, price, rcond=None)
    count += abs(perm[2]) >= observed
print(f"permutation p-value for age: {(count + 1) / 6001:.4f}")

residuals = price - X @ coef
print(f"residual std {residuals.std():.0f}")
fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
axes[0].scatter(area, price, s=2, alpha=0.3)
axes[0].set_xlabel("area (m2)")
axes[1].hist(boot[:, 1], bins=50, color="seagreen")
axes[1].set_title("bootstrap: price per m2")
axes[2].hist(residuals, bins=60, color="gray")
axes[2].set_title("residuals")
fig.tight_layout()
fig.savefig("house_prices.png", dpi=120)
print("saved house_prices.png")
"""

PROGRAMS['heat_plate'] = """\
import numpy as np
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

# Heat diffusion on a 300 x 300 plate: explicit finite differences
n, alpha, steps = 300, 0.2, 3000
start = np.zeros((n, n))
start[10:50, 10:50] = 100.0                 # a hot square near a corner

# First with the edges held at zero
u = start.copy()
for step in range(steps):
    lap = np.roll(u, 1, 0) + np.roll(u, -1, 0) + np.roll(u, 1, 1) + np.roll(u, -1, 1) - 4 * u
    u = u + alpha * lap
    u[0, :] = u[-1, :] = u[:, 0] = u[:, -1] = 0.0
fixed = u
print(f"fixed edges: peak {fixed.max():.3f}, heat left {fixed.sum() / start.sum():.1%}")

# Then with insulated edges (no flux): the heat stays on the plate
u = start.copy()
for step in range(steps):
    p = np.pad(u, 1, mode="edge")
    lap = p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4 * u
    u = u + alpha * lap
insulated = u
print(f"insulated: peak {insulated.max():.3f}, heat left {insulated.sum() / start.sum():.1%}")

# Temperature along the row through the hot square
profiles = {"fixed": fixed[30], "insulated": insulated[30]}
for name, profile in profiles.items():
    print(f"{name:>9}: x=0 {profile[0]:.2f}, x=30 {profile[30]:.2f}, x=100 {profile[100]:.3f}")

fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
for ax, (name, field) in zip(axes, (("fixed edges", fixed), ("insulated", insulated))):
    im = ax.imshow(field, cmap="inferno")
    ax.set_title(name)
    fig.colorbar(im, ax=ax, shrink=0.8)
for name, profile in profiles.items():
    axes[2].plot(profile[:150], label=name)
axes[2].legend()
axes[2].set_title("temperature along y = 30")
fig.tight_layout()
fig.savefig("heat_plate.png", dpi=120)
print("saved heat_plate.png")
"""
