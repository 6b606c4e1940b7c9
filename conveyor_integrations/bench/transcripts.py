"""The recorded model messages of every workload, in the Hermes format (text, then
``<tool_call>{"name": ..., "arguments": ...}</tool_call>`` blocks), as Qwen- and SmolLM-style
models write them. They are ours, written for the benchmark; :func:`hermes` builds them so the
JSON is always valid. Example::

    >>> hermes("Let me check.", ("calculate", {"expression": "1 + 1"}))[:40]
    'Let me check.\\n<tool_call>\\n{"name": "calc'
"""

from __future__ import annotations

import json
from typing import Any

from .programs import INTROS, PROGRAMS

__all__ = ["CALCULATOR", "CODEGEN", "PLANNING", "SEARCH", "SQL", "VALIDATION", "hermes"]


def hermes(text: str, *calls: tuple[str, dict[str, Any]], between: tuple[str, ...] = ()) -> str:
    """A message: ``text``, then each call; ``between[i]`` is text written after call ``i``."""
    out = [text]
    for i, (name, args) in enumerate(calls):
        out.append("<tool_call>\n" + json.dumps({"name": name, "arguments": args})
                   + "\n</tool_call>")
        if i < len(between) and between[i]:
            out.append(between[i])
    return "\n".join(out)


CODEGEN = {name: hermes(INTROS[name], ("run_python", {"code": code}))
           for name, code in PROGRAMS.items()}

_OUTLINE = ("write_outline",)

SEARCH = {
    "city_density": hermes(
        "To rank the three cities by population density I need each one's population and area. "
        "I'll search for all three at once and draft the report's outline while the results "
        "come in.",
        ("web_search", {"queries": ["Lyon population and area 2024",
                                    "Marseille population and area 2024",
                                    "Toulouse population and area 2024"]}),
        (_OUTLINE[0], {"title": "Population density of Lyon, Marseille and Toulouse",
                       "sections": [
                           "Sources: the official 2024 census figures found by the searches",
                           "Method: density is the municipal population divided by its area",
                           "Results: a table of population, area and density for each city",
                           "Ranking: the cities from the densest to the least dense",
                           "Caveats: municipal limits differ from metropolitan areas"]})),
    "three_lookups": hermes(
        "First I need the current release of each library.",
        ("web_search", {"queries": ["numpy latest release version"]}),
        ("web_search", {"queries": ["pandas latest release version"]}),
        ("web_search", {"queries": ["scikit-learn latest release version"]}),
        (_OUTLINE[0], {"title": "Upgrade plan for the analytics stack",
                       "sections": [
                           "Current versions pinned in requirements.txt and what changed since",
                           "Breaking changes that affect our code, library by library",
                           "Order of upgrades: numpy first, then pandas, then scikit-learn",
                           "Test plan: unit tests, the nightly pipeline, a canary deployment",
                           "Rollback: keep the old lock file and images for two weeks"]}),
        between=("Then pandas, which depends on it.", "And scikit-learn.",
                 "While those run, here is the plan I will fill in with the results.")),
    "travel_prices": hermes(
        "I'll look up the three options in parallel and prepare the comparison.",
        ("web_search", {"queries": ["train Paris to Lyon price March",
                                    "flight Paris to Lyon price March",
                                    "car rental Paris to Lyon one way price"]}),
        (_OUTLINE[0], {"title": "Paris to Lyon: train, plane or car",
                       "sections": [
                           "Door-to-door time for each option, including transfers",
                           "Price for one traveller and for a family of four",
                           "Carbon footprint per traveller for each option",
                           "Flexibility: cancellation and change fees",
                           "Recommendation with the reasons behind it"]})),
}

PLANNING = {
    "density": hermes("Here is the plan.", ("run_plan", {"plan": (
        "Thought: I need the population and the area of both cities, then their densities.\n"
        '1. lookup("population of Lyon 2024")\n'
        '2. lookup("area of Lyon in km2")\n'
        '3. lookup("population of Marseille 2024")\n'
        '4. lookup("area of Marseille in km2")\n'
        "Thought: Divide each population by its area, then compare the two densities.\n"
        '5. calculate("$1 / $2")\n'
        '6. calculate("$3 / $4")\n'
        "join()\n")})),
    "budget": hermes("I'll plan the lookups and the arithmetic.", ("run_plan", {"plan": (
        "Thought: The trip costs the flight, the hotel for four nights and the daily meals.\n"
        '1. lookup("flight Paris to Rome price")\n'
        '2. lookup("hotel Rome city centre price per night")\n'
        '3. lookup("average meal price Rome")\n'
        "Thought: Four nights of hotel and three meals a day for five days.\n"
        '4. calculate("$2 * 4")\n'
        '5. calculate("$1 + $4 + $3 * 15")\n'
        "join()\n")})),
    "growth": hermes("Plan:", ("run_plan", {"plan": (
        "Thought: Compare revenue growth of the two companies over one year.\n"
        '1. lookup("Acme revenue 2023")\n'
        '2. lookup("Acme revenue 2024")\n'
        '3. lookup("Globex revenue 2023")\n'
        '4. lookup("Globex revenue 2024")\n'
        "Thought: Growth is the ratio of the two years, minus one.\n"
        '5. calculate("$2 / $1 - 1")\n'
        '6. calculate("$4 / $3 - 1")\n'
        "join()\n")})),
}

_NOTES = ("Customer asked to be contacted by email only, preferably in the morning. "
          "They are migrating from a competitor and need the historical invoices imported.")

VALIDATION = {
    "bad_email_2nd": hermes("I'll register the customer from the form.", ("register_customer", {
        "name": "Claire Dubois", "email": "claire.dubois(at)example.fr", "age": 34,
        "country": "FR", "phone": "+33 6 12 34 56 78", "plan": "business", "seats": 12,
        "start_date": "2025-03-01", "street": "14 rue de la République",
        "city": "Lyon", "postal_code": "69002", "notes": _NOTES})),
    "bad_age_3rd": hermes("Registering the new customer now.", ("register_customer", {
        "name": "Tomás Herrera", "email": "tomas.herrera@example.es", "age": -41,
        "country": "ES", "phone": "+34 612 345 678", "plan": "team", "seats": 5,
        "start_date": "2025-04-15", "street": "Calle Mayor 8", "city": "Madrid",
        "postal_code": "28013", "notes": _NOTES})),
    "bad_country_4th": hermes("Creating the account with these details.", ("register_customer", {
        "name": "Anna Schmidt", "email": "anna.schmidt@example.de", "age": 29,
        "country": "Germany", "phone": "+49 151 2345 6789", "plan": "enterprise",
        "seats": 40, "start_date": "2025-02-10", "street": "Hauptstraße 21",
        "city": "Berlin", "postal_code": "10115", "notes": _NOTES})),
}

SQL = {
    "top_customers": hermes("Let me query the sales database.", ("run_sql", {"query": (
        "SELECT c.country, COUNT(*) AS orders, ROUND(SUM(o.amount), 2) AS revenue\n"
        "FROM orders o JOIN customers c ON c.id = o.customer_id\n"
        "GROUP BY c.country ORDER BY revenue DESC LIMIT 5;\n"
        "SELECT customer_id, ROUND(SUM(amount), 2) AS spent FROM orders\n"
        "GROUP BY customer_id ORDER BY spent DESC LIMIT 10;\n"
        "SELECT strftime('%m', day) AS month, ROUND(AVG(amount), 2) AS avg_order\n"
        "FROM orders GROUP BY month ORDER BY month;\n")})),
    "product_mix": hermes("I'll look at the product mix.", ("run_sql", {"query": (
        "SELECT product, COUNT(*) AS n FROM orders GROUP BY product ORDER BY n DESC LIMIT 5;\n"
        "SELECT product, ROUND(AVG(amount), 2) AS avg_amount FROM orders\n"
        "WHERE amount > 50 GROUP BY product ORDER BY avg_amount DESC LIMIT 5;\n"
        "SELECT c.segment, o.product, COUNT(*) AS n\n"
        "FROM orders o JOIN customers c ON c.id = o.customer_id\n"
        "GROUP BY c.segment, o.product ORDER BY n DESC LIMIT 8;\n")})),
    "repeat_buyers": hermes("Checking repeat purchases.", ("run_sql", {"query": (
        "SELECT COUNT(*) AS repeat_buyers FROM (SELECT customer_id FROM orders\n"
        "GROUP BY customer_id HAVING COUNT(*) > 20);\n"
        "SELECT c.segment, ROUND(AVG(t.n), 2) AS orders_per_customer FROM customers c\n"
        "JOIN (SELECT customer_id, COUNT(*) AS n FROM orders GROUP BY customer_id) t\n"
        "ON t.customer_id = c.id GROUP BY c.segment;\n"
        "SELECT MIN(day), MAX(day), COUNT(DISTINCT day) FROM orders;\n")})),
}

CALCULATOR = {
    "tip": hermes("Let me compute that.", ("calculate", {"expression": "86.40 * 1.15 / 4"})),
    "compound": hermes("Compounding monthly for ten years:",
                       ("calculate", {"expression": "2500 * (1 + 0.045 / 12) ** (12 * 10)"})),
    "hypotenuse": hermes("Using Pythagoras:", ("calculate", {"expression": "sqrt(3.5**2 + 7.25**2)"})),
}
