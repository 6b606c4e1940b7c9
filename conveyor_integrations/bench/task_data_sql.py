"""SQL tasks: inspect the shop database, sample it, aggregate, refine, answer (``run_sql``).

Written for the benchmark: each task is a user's question and the turns a capable open model
writes for it against the shop database of :mod:`.shop_db` (20,000 customers, 400,000 orders
in 2024). Each ``query`` holds read-only SQLite statements, each ending with ``;`` at the end of
a line, so each runs as soon as its line is decoded. The numbers in the answers are those the
queries return on the default database. Example::

    >>> [len(t.turns) for t in SQL_TASKS.tasks]
    [5, 7, 3]
"""

from __future__ import annotations

from .task_model import Family, Task
from .transcripts import hermes

__all__ = ["SQL_TASKS"]


def _sql(text: str, query: str) -> str:
    return hermes(text, ("run_sql", {"query": query}))


_LAST = ("(SELECT customer_id, MAX(day) AS last_day, COUNT(*) AS n, SUM(amount) AS spent\n"
         " FROM orders GROUP BY customer_id) t")

AT_RISK = Task("sql", "at_risk", (
    "Which of our customers look like they're drifting away? Call a customer at risk if they "
    "have not ordered since 1 November 2024. I'd like the number at risk, the share per "
    "country, which segments they're in, and how much they spent with us this year."), (
    _sql("I'll start by looking at the schema.",
         "SELECT name, sql FROM sqlite_master;\n"),
    _sql("Two tables, customers and orders. Let me look at a few rows and the date range.", (
        "SELECT * FROM customers LIMIT 5;\n"
        "SELECT * FROM orders LIMIT 5;\n"
        "SELECT COUNT(*) AS orders, MIN(day) AS first_day, MAX(day) AS last_day FROM orders;\n")),
    _sql("Days are ISO strings, so I can compare them directly. I'll find each customer's last "
         "order and count the customers at risk, overall and per country.", (
        "SELECT COUNT(*) AS customers, SUM(t.last_day < '2024-11-01') AS at_risk\n"
        f"FROM {_LAST};\n"
        "SELECT COUNT(*) AS never_ordered FROM customers\n"
        "WHERE id NOT IN (SELECT DISTINCT customer_id FROM orders);\n"
        "SELECT c.country, COUNT(*) AS customers, SUM(t.last_day < '2024-11-01') AS at_risk,\n"
        "ROUND(100.0 * SUM(t.last_day < '2024-11-01') / COUNT(*), 2) AS pct_at_risk\n"
        f"FROM customers c JOIN {_LAST}\n"
        "ON t.customer_id = c.id GROUP BY c.country ORDER BY pct_at_risk DESC;\n")),
    _sql("About 3.4% of the customers (679) are at risk, fairly evenly spread over the "
         "countries. Now the segments, what these customers spent, and the largest "
         "country-segment groups.", (
        "SELECT c.segment, COUNT(*) AS at_risk, ROUND(SUM(t.spent), 2) AS spent_2024,\n"
        "ROUND(AVG(t.n), 1) AS avg_orders, ROUND(AVG(t.spent / t.n), 2) AS avg_order_value\n"
        f"FROM customers c JOIN {_LAST}\n"
        "ON t.customer_id = c.id WHERE t.last_day < '2024-11-01'\n"
        "GROUP BY c.segment ORDER BY spent_2024 DESC;\n"
        "SELECT c.country, c.segment, COUNT(*) AS at_risk FROM customers c\n"
        f"JOIN {_LAST} ON t.customer_id = c.id\n"
        "WHERE t.last_day < '2024-11-01'\n"
        "GROUP BY c.country, c.segment ORDER BY at_risk DESC LIMIT 5;\n")),
    ("679 of the 20,000 customers (3.4%) have not ordered since 1 November 2024; every "
     "customer ordered at least once this year, so none are missing from the count. The share "
     "is fairly even across countries, from 3.81% in Poland (76 customers) and 3.71% in "
     "Ireland down to 3.12% in Germany. By segment they split almost evenly: 234 enterprise, "
     "226 consumer and 219 small-business customers. Together they spent 567,455 in 2024 "
     "(enterprise 196,451, consumer 185,558, small business 185,446), with about 16.7 orders "
     "each at an average of about 50 per order, so these were regular buyers, not one-off "
     "customers. The largest groups are small-business customers in Spain (31), enterprise "
     "customers in Belgium (30) and consumers in Ireland (30). Because the spread is so even, "
     "the November cut-off probably catches ordinary gaps between orders as well as real "
     "churn; comparing each customer's gap with their usual interval between orders would "
     "separate the two.")),
)

_Q3 = "day BETWEEN '2024-07-01' AND '2024-09-30'"
_Q4 = "day >= '2024-10-01'"

Q4_DECLINE = Task("sql", "q4_decline", (
    "I need a monthly revenue report per product for 2024, and I want to know which products "
    "lost revenue in Q4 compared with Q3, and whether the drop is concentrated in a segment "
    "or a country."), (
    _sql("First the columns of both tables.",
         "PRAGMA table_info(orders);\nPRAGMA table_info(customers);\n"),
    _sql("Let me look at some orders and the list of products.", (
        "SELECT * FROM orders ORDER BY id LIMIT 5;\n"
        "SELECT product, COUNT(*) AS orders FROM orders GROUP BY product ORDER BY product;\n")),
    _sql("Twelve products. Here is the monthly revenue per product:", (
        "SELECT strftime('%m', day) AS month, product, COUNT(*) AS orders,\n"
        "ROUND(SUM(amount), 2) AS revenue\n"
        "FROM orders GROUP BY month, product ORDER BY month, revenue DESC;\n")),
    _sql("Now Q3 against Q4 for each product; both quarters have 92 days, so the totals are "
         "directly comparable.", (
        f"SELECT product, ROUND(SUM(CASE WHEN {_Q3} THEN amount END), 2) AS q3,\n"
        f"ROUND(SUM(CASE WHEN {_Q4} THEN amount END), 2) AS q4,\n"
        f"ROUND(100.0 * (SUM(CASE WHEN {_Q4} THEN amount END)\n"
        f"/ SUM(CASE WHEN {_Q3} THEN amount END) - 1), 2) AS change_pct\n"
        "FROM orders GROUP BY product ORDER BY change_pct;\n")),
    _sql("Five products lost revenue, the charger only marginally. I'll break the change for "
         "those five down by segment and by country.", (
        f"SELECT c.segment, ROUND(SUM(CASE WHEN o.{_Q3} THEN o.amount END), 2) AS q3,\n"
        f"ROUND(SUM(CASE WHEN o.{_Q4} THEN o.amount END), 2) AS q4\n"
        "FROM orders o JOIN customers c ON c.id = o.customer_id\n"
        "WHERE o.product IN ('mouse', 'tablet', 'laptop', 'headset', 'charger')\n"
        "GROUP BY c.segment ORDER BY c.segment;\n"
        f"SELECT c.country, ROUND(SUM(CASE WHEN o.{_Q3} THEN o.amount END), 2) AS q3,\n"
        f"ROUND(SUM(CASE WHEN o.{_Q4} THEN o.amount END), 2) AS q4,\n"
        f"ROUND(100.0 * (SUM(CASE WHEN o.{_Q4} THEN o.amount END)\n"
        f"/ SUM(CASE WHEN o.{_Q3} THEN o.amount END) - 1), 2) AS change_pct\n"
        "FROM orders o JOIN customers c ON c.id = o.customer_id\n"
        "WHERE o.product IN ('mouse', 'tablet', 'laptop', 'headset', 'charger')\n"
        "GROUP BY c.country ORDER BY change_pct;\n")),
    _sql("A quick check that December is complete, since a missing week would explain a Q4 "
         "drop:",
         "SELECT COUNT(*) AS orders, MAX(day) AS last_day FROM orders\n"
         "WHERE day >= '2024-12-24';\n"),
    ("Monthly revenue per product is steady through 2024, between about 118,000 and 151,000 "
     "per product and month; February is the weakest month for most products, as it is the "
     "shortest. Comparing Q4 with Q3 (92 days each), five products lost revenue: the mouse "
     "(-3.67%, from 418,050 to 402,726), the tablet (-2.56%), the laptop (-1.51%), the headset "
     "(-1.43%) and the charger (-0.05%, flat in practice), while the keyboard (+3.64%) and the "
     "router (+3.41%) grew most. For those five products the drop is concentrated in the "
     "business segments: enterprise -2.7% and small business -2.4%, against -0.4% for "
     "consumers. By country it is concentrated in Italy (-8.2%, about 17,500 less), followed "
     "by Spain (-3.7%) and the Netherlands (-2.9%), while Sweden (+2.9%) and Germany (+0.7%) "
     "grew. December is complete (orders up to 31 December), so the drop is not a data gap; "
     "Italian business customers are the place to look first.")),
)

LAPTOP_DOCK = Task("sql", "laptop_dock", (
    "What's the average order value in each customer segment, and in which segment do laptop "
    "buyers most often also buy a dock?"), (
    _sql("Let me check the tables and a couple of orders first.", (
        "SELECT name, sql FROM sqlite_master;\n"
        "SELECT * FROM orders LIMIT 3;\n")),
    _sql("Order values per segment, then the laptop buyers who also bought a dock:", (
        "SELECT c.segment, COUNT(*) AS orders, ROUND(AVG(o.amount), 2) AS avg_order,\n"
        "ROUND(SUM(o.amount), 2) AS revenue\n"
        "FROM orders o JOIN customers c ON c.id = o.customer_id\n"
        "GROUP BY c.segment ORDER BY avg_order DESC;\n"
        "SELECT c.segment, COUNT(*) AS laptop_buyers, COUNT(d.customer_id) AS also_dock,\n"
        "ROUND(100.0 * COUNT(d.customer_id) / COUNT(*), 1) AS pct_dock\n"
        "FROM (SELECT DISTINCT customer_id FROM orders WHERE product = 'laptop') l\n"
        "JOIN customers c ON c.id = l.customer_id\n"
        "LEFT JOIN (SELECT DISTINCT customer_id FROM orders WHERE product = 'dock') d\n"
        "ON d.customer_id = l.customer_id\n"
        "GROUP BY c.segment ORDER BY pct_dock DESC;\n")),
    ("The average order value is almost the same in every segment: 49.80 for consumers, 49.74 "
     "for small businesses and 49.68 for enterprises, on about 133,000 orders and 6.6-6.7 "
     "million in revenue each. Laptop buyers who also bought a dock are most common among "
     "small businesses (81.3%, 4,438 of 5,457 laptop buyers), just ahead of enterprises "
     "(80.9%) and consumers (80.7%). The differences between segments are well within the "
     "noise, though, and 81% is about what chance alone gives: a customer places about 20 "
     "orders a year, and with twelve products equally likely, 1 - (11/12)^20 is 82%. So no "
     "segment stands out, and a bundle offer would need to be tested rather than targeted "
     "at one segment on this evidence.")),
)

SQL_TASKS = Family(
    name="sql", title="SQL", kinds=("run_sql",),
    tasks=(AT_RISK, Q4_DECLINE, LAPTOP_DOCK),
    system=(
        "You are a data analyst with read-only access to the company's SQLite database of "
        "customers and orders. run_sql(query) runs one or more SQLite statements, each ending "
        "with a semicolon, and returns their rows. Look at the schema and a few rows before "
        "writing queries, aggregate in SQL rather than fetching raw rows, and answer with the "
        "figures the queries returned."),
    note=("The schema, sample and sanity-check statements run in milliseconds, so only the "
          "aggregations over the 400,000 orders give partial execution work to overlap with "
          "decoding."),
)
