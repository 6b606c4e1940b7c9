"""The SQL workload's database: a generated shop with customers and orders (SQLite).

Deterministic for a seed; built once per benchmark run in a temporary folder (about 2 s for the
default 400,000 orders). Example::

    >>> import tempfile, pathlib, sqlite3
    >>> path = make_shop_db(pathlib.Path(tempfile.mkdtemp()) / "shop.db", orders=100)
    >>> sqlite3.connect(path).execute("SELECT COUNT(*) FROM orders").fetchone()
    (100,)
"""

from __future__ import annotations

import random
import sqlite3
from datetime import date, timedelta
from pathlib import Path

__all__ = ["make_shop_db"]

_COUNTRIES = ("FR", "DE", "ES", "IT", "NL", "BE", "PL", "SE", "PT", "IE")
_SEGMENTS = ("consumer", "small business", "enterprise")
_PRODUCTS = ("laptop", "phone", "monitor", "keyboard", "mouse", "headset", "dock", "tablet",
             "printer", "router", "webcam", "charger")


def make_shop_db(path: Path, *, orders: int = 400_000, customers: int = 20_000,
                 seed: int = 0) -> Path:
    """Write ``customers`` and ``orders`` tables to a new SQLite file at ``path``."""
    rng = random.Random(seed)
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    try:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, country TEXT,"
                     " segment TEXT)")
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER,"
                     " product TEXT, amount REAL, day TEXT)")
        conn.executemany("INSERT INTO customers VALUES (?, ?, ?, ?)", (
            (i, f"customer {i}", rng.choice(_COUNTRIES), rng.choice(_SEGMENTS))
            for i in range(1, customers + 1)))
        start = date(2024, 1, 1)
        conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?)", (
            (i, rng.randint(1, customers), rng.choice(_PRODUCTS),
             round(rng.lognormvariate(3.5, 0.9), 2),
             (start + timedelta(days=rng.randrange(366))).isoformat())
            for i in range(1, orders + 1)))
        conn.commit()
    finally:
        conn.close()
    return path
