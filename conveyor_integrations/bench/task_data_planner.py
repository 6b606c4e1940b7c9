"""Planner tasks: LLMCompiler-style plans of lookups and calculations (``run_plan`` only).

Written for the benchmark: each task is a user's question and the turns a capable open model
writes for it. A plan is ``Thought:`` lines and numbered steps, ``lookup("...")`` (a search,
~1.5 s) and ``calculate("...")`` (instant) with ``$k`` for step k's result, ending with
``join()``; the calculations depend on several lookups and on each other (diamonds), and a
later plan uses the numbers the first one returned. Example::

    >>> [len(t.turns) for t in PLANNER.tasks]
    [3, 5, 4]
"""

from __future__ import annotations

from .task_model import Family, Task
from .transcripts import hermes

__all__ = ["PLANNER"]


def _plan(text: str, *lines: str) -> str:
    return hermes(text, ("run_plan", {"plan": "".join(line + "\n" for line in lines)}))


COMMUTE = Task("planner", "commute", (
    "I'm moving to Grenoble but keeping my job in Lyon, commuting 220 days a year. Is it "
    "cheaper to drive (a compact petrol car, motorway both ways) or to take the regional "
    "train with a yearly season ticket?"), (
    _plan("I'll plan the lookups for both options and the arithmetic that combines them.",
          "Thought: For the car I need the distance, the fuel use, the fuel price and the "
          "motorway toll; for the train, the price of a yearly season ticket.",
          '1. lookup("road distance Lyon to Grenoble in km")',
          '2. lookup("average fuel consumption of a compact petrol car in litres per 100 km")',
          '3. lookup("price of a litre of unleaded petrol in France 2024")',
          '4. lookup("motorway toll Lyon to Grenoble one way for a car")',
          '5. lookup("yearly TER season ticket price Lyon Grenoble")',
          "Thought: A round trip each working day: fuel for twice the distance, plus two tolls.",
          '6. calculate("2 * $1 * $2 / 100 * $3")',
          '7. calculate("2 * $4")',
          '8. calculate("220 * ($6 + $7)")',
          "Thought: The difference between a year of driving and the season ticket.",
          '9. calculate("$8 - $5")',
          "join()"),
    _plan("Driving costs more even on fuel and tolls alone. To be fair to the car I'll add "
          "parking in Lyon and the wear that comes with the extra kilometres.",
          "Thought: Parking near the office is paid monthly (11 working months); running costs "
          "other than fuel are charged per km, over 220 round trips of 2 x 106 km.",
          '1. lookup("monthly parking subscription price Lyon Part-Dieu")',
          '2. lookup("car running cost per km excluding fuel France maintenance tyres")',
          '3. calculate("11 * $1")',
          '4. calculate("220 * 2 * 106 * $2")',
          '5. calculate("$3 + $4")',
          "Thought: Add them to the fuel and tolls found before (EUR 9,920 a year), then "
          "compare with the EUR 1,380 season ticket, also per working day.",
          '6. calculate("9920 + $5")',
          '7. calculate("$6 - 1380")',
          '8. calculate("$6 / 220")',
          "join()"),
    ("The train is far cheaper. Driving 2 x 106 km a day at 6.5 l/100 km and EUR 1.85 a "
     "litre costs about EUR 25.50 of fuel a day, plus EUR 19.60 of tolls for the round trip, "
     "so EUR 9,920 a year over 220 working days on fuel and tolls alone, against about EUR "
     "1,380 for the yearly TER season ticket. Adding parking near Lyon Part-Dieu (about EUR "
     "120 a month, EUR 1,320 a year) and wear, maintenance and tyres at about EUR 0.09 per km "
     "(EUR 4,200 for the 46,640 km) brings the car to about EUR 15,440 a year, or EUR 70 per "
     "working day. The train therefore saves you about EUR 14,000 a year, or EUR 8,500 if you "
     "count fuel and tolls only, and French employers reimburse half of the season ticket on "
     "top. The car only makes sense if the train times do not fit your hours or the last "
     "kilometres at either end take too long.")),
)

RELOCATION = Task("planner", "relocation", (
    "We're a family of four (two children aged 3 and 7) thinking of moving to Lisbon, Porto or "
    "Valencia. Compare the monthly cost of rent for a 3-bedroom flat, groceries, childcare "
    "and transport in each, and tell us what net monthly income we'd need in each city to "
    "still save 15% of it."), (
    _plan("I'll look up the main costs for the three cities at once and combine them.",
          "Thought: Rent, groceries for four and childcare for the 3-year-old in each city.",
          '1. lookup("average rent 3 bedroom apartment Lisbon per month 2024")',
          '2. lookup("monthly grocery cost family of four Lisbon")',
          '3. lookup("monthly daycare fee for a 3 year old Lisbon")',
          '4. lookup("average rent 3 bedroom apartment Porto per month 2024")',
          '5. lookup("monthly grocery cost family of four Porto")',
          '6. lookup("monthly daycare fee for a 3 year old Porto")',
          '7. lookup("average rent 3 bedroom apartment Valencia per month 2024")',
          '8. lookup("monthly grocery cost family of four Valencia")',
          '9. lookup("monthly daycare fee for a 3 year old Valencia")',
          "Thought: Total per city, then the income at which that total is 85% of it.",
          '10. calculate("$1 + $2 + $3")',
          '11. calculate("$4 + $5 + $6")',
          '12. calculate("$7 + $8 + $9")',
          '13. calculate("$10 / 0.85")',
          '14. calculate("$11 / 0.85")',
          '15. calculate("$12 / 0.85")',
          "join()"),
    _plan("Transport is still missing: monthly passes for the two adults and school transport "
          "for the 7-year-old.",
          "Thought: Two adult passes and one child pass per city; then the updated totals, "
          "using the sums found before (Lisbon 3,410, Porto 2,620, Valencia 2,890).",
          '1. lookup("Lisbon Navegante monthly pass price adult and child")',
          '2. lookup("Porto Andante monthly pass price adult and child")',
          '3. lookup("Valencia EMT metro monthly pass price adult and child")',
          '4. calculate("3410 + 2 * $1 + 0.5 * $1")',
          '5. calculate("2620 + 2 * $2 + 0.5 * $2")',
          '6. calculate("2890 + 2 * $3 + 0.5 * $3")',
          '7. calculate("$4 / 0.85")',
          '8. calculate("$5 / 0.85")',
          '9. calculate("$6 / 0.85")',
          "join()"),
    _plan("To put the Valencia figure in context, one lookup for typical net salaries there.",
          "Thought: A single lookup, then how many typical salaries the needed income is.",
          '1. lookup("average net monthly salary Valencia 2024")',
          '2. calculate("3540 / $1")',
          "join()"),
    _plan("Last, the three budgets side by side relative to Lisbon.",
          "Thought: Only arithmetic on the totals already found.",
          '1. calculate("2720 / 3510")',
          '2. calculate("3010 / 3510")',
          '3. calculate("(3510 - 2720) * 12")',
          "join()"),
    ("Porto is the cheapest of the three and Lisbon the most expensive. A 3-bedroom flat "
     "costs about EUR 2,300 a month in Lisbon, EUR 1,600 in Porto and EUR 1,750 in Valencia; "
     "groceries for four come to about EUR 750-800 in each, and daycare for your 3-year-old "
     "to EUR 250-350. With transport passes for two adults and the 7-year-old (EUR 100-120 a "
     "month), the monthly budgets are about EUR 3,510 in Lisbon, EUR 2,720 in Porto and EUR "
     "3,010 in Valencia. To save 15% you would need a net income of about EUR 4,130 a month "
     "in Lisbon, EUR 3,200 in Porto and EUR 3,540 in Valencia. Porto costs 23% less than "
     "Lisbon, about EUR 9,500 a year, and Valencia 14% less. In Valencia the needed income is "
     "about 1.9 typical net salaries, so it is comfortable with two incomes but tight with "
     "one; rents are the biggest item everywhere, so the neighbourhood matters more than the "
     "city.")),
)

SOLAR = Task("planner", "solar", (
    "Would a 6 kWp rooftop solar installation pay for itself faster in Munich or in Madrid? "
    "Assume we use about a third of the production ourselves and export the rest, and tell "
    "me whether a battery changes the answer."), (
    _plan("I'll look up yield, prices and tariffs for both cities and compute the payback.",
          "Thought: Production is the size times the yield per kWp; savings are the used share "
          "at the retail price plus the exported share at the feed-in tariff.",
          '1. lookup("annual solar yield kWh per kWp Munich")',
          '2. lookup("annual solar yield kWh per kWp Madrid")',
          '3. lookup("installed cost per kWp rooftop solar Germany 2024")',
          '4. lookup("installed cost per kWp rooftop solar Spain 2024")',
          '5. lookup("household electricity price per kWh Germany 2024")',
          '6. lookup("household electricity price per kWh Spain 2024")',
          '7. lookup("feed-in tariff for small rooftop solar Germany 2024 ct per kWh")',
          '8. lookup("compensation for exported solar electricity Spain per kWh")',
          '9. calculate("6 * $1")',
          '10. calculate("6 * $2")',
          "Thought: One third used at home, two thirds exported.",
          '11. calculate("$9 / 3 * $5 + $9 * 2 / 3 * $7")',
          '12. calculate("$10 / 3 * $6 + $10 * 2 / 3 * $8")',
          '13. calculate("6 * $3 / $11")',
          '14. calculate("6 * $4 / $12")',
          "join()"),
    _plan("Madrid pays back sooner. Now the battery: it raises the share used at home, at a "
          "price.",
          "Thought: A 10 kWh battery and the self-consumption share it allows; redo the "
          "savings with that share (production 6,600 kWh in Munich, 10,200 kWh in Madrid).",
          '1. lookup("home battery storage 10 kWh installed price 2024")',
          '2. lookup("self consumption share rooftop solar with 10 kWh battery")',
          '3. calculate("6600 * $2 * 0.40 + 6600 * (1 - $2) * 0.081")',
          '4. calculate("10200 * $2 * 0.19 + 10200 * (1 - $2) * 0.05")',
          '5. calculate("(6 * 1450 + $1) / $3")',
          '6. calculate("(6 * 1100 + $1) / $4")',
          "join()"),
    _plan("One more factor for the long run: panels lose some output every year.",
          "Thought: The yearly degradation, then 25 years of output in first-year equivalents.",
          '1. lookup("rooftop solar panel degradation rate percent per year")',
          '2. calculate("(1 - (1 - $1 / 100) ** 25) / ($1 / 100)")',
          "join()"),
    ("Without a battery the installation pays for itself slightly faster in Madrid: about 6.7 "
     "years against 7.0 in Munich. Munich yields about 1,100 kWh per kWp (6,600 kWh a year) at "
     "EUR 1,450 per kWp installed, but electricity is expensive there (about 40 ct/kWh), so "
     "using a third yourself and exporting the rest at 8.1 ct saves about EUR 1,240 a year on "
     "an EUR 8,700 system. Madrid yields about 1,700 kWh per kWp (10,200 kWh a year) and costs "
     "about EUR 1,100 per kWp, but retail electricity is cheaper (19 ct) and exports earn only "
     "about 5 ct, so it saves about EUR 990 a year on an EUR 6,600 system. A 10 kWh battery "
     "(about EUR 7,000 installed) raises self-consumption to about 65% and the savings to "
     "about EUR 1,900 in Munich and EUR 1,440 in Madrid, but it lengthens the payback in both "
     "cities, to about 8.3 years in Munich and 9.5 in Madrid. So the battery does not pay on "
     "these prices, and if you want one anyway it makes more sense in Munich, where every "
     "kWh used at home saves 40 ct. Panels lose about 0.5% of their output a year, so 25 "
     "years deliver about 23.6 years' worth of first-year savings: enough margin in both "
     "cities, and it adds only a few months to each payback.")),
)

PLANNER = Family(
    name="planner", title="Planner", kinds=("run_plan",),
    tasks=(COMMUTE, RELOCATION, SOLAR),
    system=(
        "You are a planning assistant. To answer, write a plan for run_plan(plan): optional "
        "'Thought:' lines and numbered steps, each one lookup(\"query\") to search for a "
        "number or calculate(\"expression\") to do arithmetic, where $k stands for the result "
        "of step k; end the plan with join(). Independent steps run in parallel, so put all "
        "the lookups you need in one plan. You may send a second plan after seeing the "
        "results, then answer in plain prose with the numbers."),
    note=("Calculations are instant and wait for lookups written earlier, so the gain is in "
          "starting each lookup while the rest of the plan is decoded; a one-lookup plan or "
          "a plan of calculations only gains next to nothing."),
)
