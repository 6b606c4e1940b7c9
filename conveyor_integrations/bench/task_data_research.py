"""Research tasks: search the web, read some of the results, search again, answer.

Written for the benchmark: each task is a user's question and the turns a capable open model
writes for it, with ``web_search`` and ``fetch_pages`` calls. Every URL a turn fetches is one the
previous search returned (:func:`~.search_server.fake_results` of the queries written there), so
the fetches find the pages the search server serves. Example::

    >>> [len(t.turns) for t in RESEARCH.tasks]
    [5, 7, 3]
    >>> RESEARCH.tasks[0].turns[1].count("https://search.example/")
    5
"""

from __future__ import annotations

from .search_server import fake_results
from .task_model import Family, Task
from .transcripts import hermes

__all__ = ["RESEARCH"]


def _url(query: str, i: int) -> str:
    """The URL of the ``i``-th result the search server gives for ``query``."""
    return fake_results(query)[i]["url"]


def _search(*queries: str) -> tuple[str, dict[str, list[str]]]:
    return ("web_search", {"queries": list(queries)})


def _fetch(*urls: str) -> tuple[str, dict[str, list[str]]]:
    return ("fetch_pages", {"urls": list(urls)})


# Heat pumps against gas boilers: two searches, two fetches (one of them tool-light)
_HP = ("heat pump annual running cost Germany 2024 single family house",
       "gas boiler annual running cost Germany 2024 gas price per kWh",
       "heat pump vs gas boiler running costs France 2024",
       "average heat demand kWh per year single family house Germany")
_HP2 = "heat pump electricity tariff price per kWh Germany 2024"

HEAT_PUMPS = Task("research", "heat_pumps", (
    "We're replacing a 20-year-old gas boiler in a detached house (about 150 m2, built in the "
    "1990s). Is a heat pump actually cheaper to run than a new gas boiler, in Germany and in "
    "France? I'd like rough yearly running costs for both, and what the answer depends on."), (
    hermes("I'll look up running costs for both systems in each country, plus the typical heat "
           "demand of a house like yours, since the comparison scales with it.",
           _search(*_HP)),
    hermes("The results cover both countries. I'll read the two German heat pump pages, the "
           "gas boiler cost breakdown, the French comparison and the heat demand figures.",
           _fetch(_url(_HP[0], 0), _url(_HP[0], 1), _url(_HP[1], 0), _url(_HP[2], 0),
                  _url(_HP[3], 1))),
    hermes("The German figures hinge on the electricity price: several pages mention special "
           "heat pump tariffs that are well below the household rate. Let me check what those "
           "tariffs cost in 2024.",
           _search(_HP2)),
    hermes("Two of these compare the heat pump tariffs with the standard rate; I'll read both.",
           _fetch(_url(_HP2, 0), _url(_HP2, 2))),
    ("For a 1990s detached house of about 150 m2 the heat demand is roughly 18,000-22,000 kWh a "
     "year, and on that basis a heat pump is cheaper to run in both countries, by a wider margin "
     "in France. In Germany a new condensing gas boiler costs about EUR 2,100-2,400 a year at "
     "2024 gas prices (around 11-12 ct/kWh including the CO2 levy), while an air-source heat "
     "pump with a seasonal efficiency (SCOP) of 3.2 needs about 6,300 kWh of electricity: EUR "
     "1,750 at the standard 28 ct/kWh, or about EUR 1,450 on a dedicated heat pump tariff at "
     "roughly 23 ct/kWh. In France electricity is cheaper (about 25 ct/kWh regulated) while gas "
     "is similar, so the heat pump comes to about EUR 1,550 against EUR 2,200 for gas. The "
     "answer depends mostly on the ratio of electricity to gas prices and on the SCOP: with old "
     "radiators that need high flow temperatures the SCOP can drop to 2.5, which erases most of "
     "the German advantage on a standard tariff. The sources also note the rising CO2 price on "
     "gas in Germany, which widens the gap in later years, and that purchase subsidies (up to "
     "70% in Germany, MaPrimeRenov' in France) matter more for the total cost than running "
     "costs do.")),
)

# LFP against NMC batteries: three searches, three fetches, one of each tool-light
_EV = ("LFP vs NMC battery degradation real world fleet data",
       "LFP battery capacity retention after 200000 km",
       "NMC battery degradation per year electric taxi fleet")
_EV2 = ("LFP battery cold weather capacity loss winter range",
        "LFP charge to 100 percent recommendation degradation")
_EV3 = "EV battery warranty 8 years 160000 km 70 percent capacity LFP NMC"

EV_BATTERIES = Task("research", "ev_batteries", (
    "Our company is about to lease 40 electric vans, and the dealer offers each model with "
    "either an LFP or an NMC battery. Which chemistry holds its capacity better over 5-6 years "
    "of heavy use, according to real fleet data rather than lab claims? Anything else we "
    "should weigh?"), (
    hermes("I'll search for fleet degradation data on both chemistries, including high-mileage "
           "vehicles such as taxis.",
           _search(*_EV)),
    hermes("There are fleet studies and a taxi report among the results. I'll read the two "
           "fleet comparisons, the high-mileage LFP page and the taxi fleet data.",
           _fetch(_url(_EV[0], 0), _url(_EV[0], 2), _url(_EV[1], 0), _url(_EV[2], 1))),
    hermes("The fleet data favours LFP on cycle life, but two pages say its range suffers more "
           "in winter and that LFP cars should be charged to 100% regularly. Both matter for a "
           "van fleet, so I'll look into them.",
           _search(*_EV2)),
    hermes("I'll read the winter range measurements and the charging guidance.",
           _fetch(_url(_EV2[0], 0), _url(_EV2[0], 1), _url(_EV2[1], 0))),
    hermes("One more thing to check: what the battery warranties guarantee.",
           _search(_EV3)),
    hermes("The first result compares the warranty terms directly.",
           _fetch(_url(_EV3, 0))),
    ("Real fleet data favours LFP for heavy use: the fleet studies show LFP packs keeping about "
     "90-92% of their capacity after 200,000 km, against 85-88% for NMC packs at the same "
     "mileage, and the taxi fleet report finds NMC losing about 2.3% a year under daily fast "
     "charging against 1.5% for LFP. LFP also tolerates being charged to 100% every day (the "
     "manufacturers recommend it, to keep the state-of-charge estimate calibrated), whereas NMC "
     "lasts longer when kept at 80%, which matters if drivers need the full range. The main "
     "drawback of LFP is the cold: winter measurements show 25-35% less range at -10 C against "
     "about 20% for NMC, and slower charging until the pack warms up, so vans parked outside in "
     "winter should be preconditioned while still plugged in. LFP packs are also heavier for "
     "the same capacity, which can cut the payload of a van by 50-100 kg. Warranties are "
     "similar (8 years or 160,000 km with 70% capacity retained), so with 5-6 years of heavy "
     "use I would choose LFP unless the vans run long routes in a cold climate.")),
)

# Rail against air: one search, one fetch, answer
_RAIL = ("high speed rail CO2 emissions per passenger km Europe",
         "short haul flight CO2 per passenger km Europe 2024",
         "Paris Lyon TGV vs flight CO2 per passenger")

RAIL_VS_AIR = Task("research", "rail_vs_air", (
    "For our company travel policy: how much CO2 per passenger-kilometre does high-speed rail "
    "emit compared with a short-haul flight in Europe? A figure for each, with a source, is "
    "enough."), (
    hermes("I'll search for per-passenger-km emission factors for both modes and a concrete "
           "route comparison.",
           _search(*_RAIL)),
    hermes("I'll read the two rail pages, the aviation emission factors and the Paris-Lyon "
           "comparison.",
           _fetch(_url(_RAIL[0], 0), _url(_RAIL[0], 1), _url(_RAIL[1], 0), _url(_RAIL[2], 2))),
    ("High-speed rail emits far less: the European figures put it at about 4-30 g of CO2 per "
     "passenger-km depending on the electricity mix (around 4 g in France, 25-30 g in Germany), "
     "while short-haul flights come to about 150-250 g per passenger-km once take-off and "
     "landing are included, higher still with the non-CO2 effects that some factors add. The "
     "Paris-Lyon comparison gives about 2 kg of CO2 per passenger by TGV against about 80 kg "
     "by plane. For the policy, a factor of 25 g for rail and 200 g for flights is a reasonable "
     "conservative pair, and both figures come from the national emission factor databases "
     "cited on those pages.")),
)

RESEARCH = Family(
    name="research", title="Research", kinds=("web_search", "fetch_pages"),
    tasks=(HEAT_PUMPS, EV_BATTERIES, RAIL_VS_AIR),
    system=(
        "You are a research assistant. Answer the user's question from current sources: use "
        "web_search(queries) to run several searches at once and fetch_pages(urls) to read "
        "the results you need, then search again when what you read raises a new question. "
        "Fetch only URLs that a search returned. When you have enough, answer in plain prose "
        "with the figures you found and say what they depend on."),
    note=("A turn with one query or one URL has a single string that closes at the very end "
          "of its call, so starting it early saves only the few closing tokens."),
)
