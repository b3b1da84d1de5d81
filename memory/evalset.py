"""A labelled retrieval set that keyword search gets wrong, and the measures to score it.

``build(seed)`` makes the same set for the same seed: for each of about a hundred intents, a
query and one relevant document that paraphrases it (different words, same meaning), plus
*hard negatives* — documents that repeat the query's own keywords in an unrelated context
(a band's track names, a crossword, a shop's product line) — and filler in the same style
built from other intents' keywords, for more than 2,000 documents. A keyword ranker such as
BM25 prefers the negatives (they share the words); an embedder that understands meaning
prefers the paraphrase. ``recall_at(k)`` scores any ranking; ``BM25`` is the baseline.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# A query, then (indented) the one relevant document: a paraphrase, other words, same meaning.
_INTENTS = """
How do I fix a dripping kitchen faucet?
    Repairing a leaky tap over the sink usually means replacing a worn washer.
my laptop battery drains very fast
    Notebook computer loses its charge within an hour even when idle.
best way to keep cut flowers fresh longer
    Trim the stems and change the vase water daily so bouquets last.
garbage truck skipped our street this week
    Refuse collection missed the road on Tuesday; bins were left full.
streetlight flickering at night near the park
    The lamp post by the playground blinks on and off after dark.
pothole damaged my car tire
    A deep hole in the asphalt bent the wheel rim of my vehicle.
symptoms of dehydration in hot weather
    Signs your body lacks water during a heatwave include dizziness and dark urine.
how to cook rice so it is fluffy
    For light, separate grains, rinse the kernels and simmer them covered, then let them rest.
dog keeps barking at the mailman
    Our puppy growls and yaps whenever the postal carrier arrives.
train delayed because of snow
    The railway service ran late after a blizzard covered the tracks.
apartment heating not working in winter
    The radiator in our flat stays cold even though it is freezing outside.
how to reset a forgotten email password
    Recover access to your mailbox account when you cannot remember the login credentials.
water main burst flooding the road
    A ruptured underground pipe sent a torrent across the street.
recycling bin full of cardboard boxes
    The paper container is overflowing with flattened packaging.
noise complaint about loud music from neighbors
    The people next door blast songs late every night and we cannot sleep.
tree fell on power lines during storm
    A gale toppled an oak onto the electricity cables.
how to grow tomatoes on a balcony
    Cultivating cherry tomato plants in pots on a terrace needs sun and regular watering.
bus stop shelter glass smashed
    Vandals shattered the panels of the waiting booth where commuters catch the coach.
elevator stuck between floors
    The lift halted midway up the building with passengers inside.
graffiti sprayed on the school wall
    Someone painted tags on the side of the classroom building overnight.
how to lower cholesterol with diet
    Eating oats, beans and fewer fried foods reduces blood lipid levels.
stray cats in the alley need food
    Homeless felines behind the shops are hungry and looking for something to eat.
parking ticket appeal process
    To contest a fine for leaving your vehicle in a restricted spot, submit a written objection.
wifi connection keeps dropping
    The wireless internet signal disconnects every few minutes.
how much sleep do teenagers need
    Adolescents should rest about eight to ten hours each night.
broken swing at the playground
    One of the children's seats hanging from the frame in the play area has snapped.
smell of gas in the kitchen
    There is an odour of leaking fuel near the stove; open windows and call the utility.
flight cancelled, how to get a refund
    If the airline scraps your trip, you can claim your money back.
snow not cleared from sidewalk
    The pavement is still covered with ice and slush because nobody shovelled it.
headache after staring at screens all day
    Long hours in front of a monitor can leave your head aching and eyes strained.
how to remove red wine stain from carpet
    Blot the spilled merlot on the rug with salt and cold water before it sets.
bicycle stolen from outside the station
    Someone took my bike that was locked near the railway terminal.
mold growing on bathroom ceiling
    Black fungus is spreading above the shower because of damp air.
public toilet closed for cleaning
    The restroom in the square is shut while staff sanitize it.
how to teach a child to ride a bike
    Help a kid learn cycling by lowering the saddle and removing the pedals at first.
traffic jam caused by accident on highway
    A crash on the motorway has backed up cars for kilometres.
fridge making loud humming noise
    The refrigerator buzzes constantly and it is getting louder.
dead fish floating in the river
    Lifeless trout are washing up along the stream, suggesting pollution.
when is the next full moon
    The coming lunar phase where the whole disc is lit arrives on the fourteenth.
how to write a cover letter for a job
    A short note to an employer introducing yourself should accompany your application.
bees nest under the roof
    A colony of honeybees has settled beneath the eaves of our house.
library book overdue fine
    You owe a small charge for returning a borrowed novel late.
how to stop snoring
    Ways to quiet loud breathing during sleep include lying on your side.
fireworks scaring pets
    Animals at home panic when rockets explode in the sky at celebrations.
sewer overflow smell in street
    Wastewater is spilling from a drain and the road stinks.
how to save money on groceries
    Cut your food shopping bill by planning meals and buying store brands.
earthquake safety tips
    During tremors, drop under a sturdy table and cover your head.
cycle lane blocked by parked delivery vans
    Couriers' trucks are stopping on the bike path, forcing riders into traffic.
how to clean a cast iron pan
    Scrub the skillet with coarse salt, dry it over heat and rub in oil.
children's vaccination schedule
    Immunisation timetable for infants and toddlers, with jabs at two, four and twelve months.
volunteer opportunities at animal shelter
    Help out at the rescue home for dogs and cats by walking them on weekends.
how to jump start a car battery
    Use cables from another vehicle to revive a flat accumulator.
invasive weeds taking over the garden
    Aggressive plants like knotweed are smothering our flower beds.
oil spill on the beach
    Crude leaked from a tanker and blackened the sand along the coast.
how to make sourdough starter
    Mix flour and water, leave it to ferment and feed it daily to build a natural yeast culture.
heat wave warning for the weekend
    Authorities expect scorching temperatures on Saturday and Sunday.
lost wallet on the bus
    I left my purse with cards and cash on public transport.
skin rash after using new soap
    An itchy red reaction appeared once I switched to a different cleanser.
how to file taxes as a freelancer
    Self-employed workers submit their income return and pay levies quarterly.
ambulance response time too slow
    Paramedics took forty minutes to reach the injured man.
plastic bags clogging storm drains
    Discarded carrier sacks block the gutters so rainwater cannot escape.
how to meditate for beginners
    Newcomers to mindfulness can start by sitting quietly and following the breath.
landlord refuses to return deposit
    The property owner will not give back the security money after we moved out.
coffee machine leaking water
    The espresso maker drips onto the counter from its base.
solar panels producing less power
    Our rooftop photovoltaic array generates lower output than last year.
how to treat a bee sting
    Scrape out the stinger and apply ice to reduce the swelling.
school closed due to flooding
    Classes were cancelled after rising water swamped the campus.
how to improve posture at a desk
    Sit upright with your monitor at eye level and feet flat on the floor.
dangerous intersection needs a crosswalk
    Pedestrians want zebra stripes painted at the risky junction.
birthday party ideas for a ten year old
    Fun celebrations for a kid turning ten: a treasure hunt or a cinema outing.
air quality alert because of wildfire smoke
    Haze from burning forests has made the atmosphere unhealthy to breathe.
how to unclog a bathroom sink
    Clear a blocked basin drain with baking soda, vinegar and a plunger.
abandoned car parked for weeks
    A vehicle has been left untouched at the kerb for over a month.
how to learn a foreign language quickly
    Pick up a new tongue fast through daily practice with native speakers.
pharmacy open on sunday
    The chemist on Main Road dispenses medicine seven days a week.
ice cream melting in the freezer
    Frozen desserts turn soft because the cold compartment is not cold enough.
new bike sharing scheme launched
    The city introduced rentable bicycles at docking points downtown.
how to protect plants from frost
    Cover seedlings with fleece on freezing nights so they do not die.
phone screen cracked after dropping it
    My mobile's display shattered when it fell on the floor.
bridge closed for repairs
    The crossing over the river is shut while engineers fix it.
how to make a budget spreadsheet
    Track income and expenses in rows and columns to plan your finances.
rats seen near restaurant bins
    Rodents are scurrying around the eatery's rubbish containers.
how to prepare for a job interview
    Before meeting a hiring manager, research the company and rehearse answers.
washing machine won't drain
    Water stays in the drum of the laundry appliance after the cycle.
fog causing poor visibility on roads
    Thick mist makes it hard for drivers to see ahead.
how to care for a newborn baby
    Looking after an infant means feeding every few hours and safe sleep on the back.
stadium concert tickets sold out
    No seats remain for the band's show at the arena.
how to recycle old electronics
    Dispose of broken gadgets and e-waste at a collection point.
children playing near the railway tracks
    Kids are wandering along the train line, which is dangerous.
lightning strike damaged the roof
    A thunderbolt hit the house and tore shingles off the top.
how to boost immune system naturally
    Strengthen your body's defences with sleep, vegetables and exercise.
museum free entry days
    The gallery does not charge admission on the first Sunday of each month.
how to knit a scarf
    Make a woolly neck warmer with two needles and a simple stitch.
jellyfish on the beach stinging swimmers
    Medusae washed ashore are hurting bathers at the seaside.
how to negotiate a higher salary
    Ask your employer for better pay by citing your achievements and market rates.
power outage in the neighbourhood
    Electricity is off across several blocks of our district.
how to descale a kettle
    Remove limescale from the water boiler with citric acid or vinegar.
street market on saturday mornings
    Traders set up stalls in the square at the start of each weekend.
how to choose running shoes
    Pick jogging trainers that fit your foot arch and stride.
overgrown hedge blocking the footpath
    Bushes have grown so wide that walkers cannot pass along the walkway.
how to get rid of ants in the kitchen
    Eliminate insects marching across the counter with bait and by sealing cracks.
hospital visiting hours
    Relatives may see patients on the ward between two and eight.
how to make a paper airplane
    Fold a sheet into a dart-shaped glider that flies across the room.
drought restrictions on watering lawns
    During the dry spell, sprinklers on grass are banned.
how to write a will
    Draft a legal testament stating who inherits your property.
kids' swimming lessons at the pool
    Children can learn to swim with instructors at the aquatic centre.
how to store fresh herbs
    Keep basil and parsley in a glass of water or wrapped in damp paper in the fridge.
car alarm going off all night
    A vehicle's siren kept sounding until dawn.
how to change a car's engine oil
    Drain the old lubricant from the motor and refill with fresh fluid.
sunburn relief remedies
    Soothe skin reddened by too much sun with aloe and cool compresses.
how to train for a marathon
    Prepare to run forty-two kilometres by gradually increasing weekly mileage.
owl hooting in the backyard at night
    A nocturnal bird of prey calls from the trees behind our house after dark.
how to repot a cactus
    Move a succulent to a bigger container wearing gloves against its spines.
speeding drivers outside the primary school
    Motorists race past the infant classrooms well above the limit.
how to sharpen kitchen knives
    Hone blades on a whetstone at a steady angle.
"""

# Unrelated contexts that carry two keywords ({a}, {b}) without their meaning.
_CONTEXTS = (
    "A jazz trio released an album with tracks called '{A}' and '{B}'.",
    "In yesterday's crossword, 14 across was '{a}' and 9 down was '{b}'.",
    "The art gallery opened an abstract exhibition titled '{A} {B}'.",
    "The startup renamed its accounting app from '{A}' to '{B}' after the merger.",
    "The spelling bee finalist spelled '{a}' correctly but stumbled on '{b}'.",
    "A poet's new collection uses {a} and {b} as metaphors for lost love.",
    "The linguistics lecture compared the etymology of '{a}' with that of '{b}'.",
    "The toy store sells a board game where players collect {a} cards and {b} tokens.",
    "The marketing team picked '{A} {B}' as the slogan for a perfume launch.",
    "At the chess club, '{A}' and '{B}' are the nicknames of two rival players.",
    "The translator struggled to render '{a}' and '{b}' into Japanese.",
    "The karaoke bar's playlist includes songs named {A} and {B}.",
    "A trivia question asked whether '{a}' or '{b}' has more letters.",
    "The fashion designer's autumn collection is called {A} {B}.",
    "The shares of {A} Holdings rose while {B} Corp fell in afternoon trading.",
    "Our book club voted to read a thriller whose title mentions {a} and {b}.",
    "The history society's newsletter printed an essay on medieval guilds called '{A} and {B}'.",
    "The video game's final level is named {A}, and its secret boss is {B}.",
    "The comedian's stand-up special riffs on the words {a} and {b} for ten minutes.",
    "A typeface designer used '{a} {b}' as the sample text for a new serif font.",
    "The racehorse {A} beat {B} by a nose at the derby.",
    "The opera's two acts are subtitled {A} and {B}.",
    "The escape room puzzle's passwords were '{a}' and '{b}'.",
    "A picture book pairs the word {a} with a drawing of a giraffe and {b} with a whale.",
    "The law firm {A} & {B} opened an office downtown.",
    "The perfume notes list {a} on the top and {b} at the base, according to the label.",
    "The yacht {A} finished second and the yacht {B} third in the regatta.",
    "The dictionary app's word of the day was '{a}', followed by '{b}'.",
    "A sculptor named her bronze twins {A} and {B}.",
    "The indie band {A} {B} announced a reunion tour of small clubs.",
)

_STOP_WORDS = (
    "a an and are as at be because by can do does for from get how i in is it its my near "
    "not of on or our so the this to too very we what when where which who why will with "
    "your all after keeps keep next new some much"
)
_STOP = frozenset(_STOP_WORDS.split())
_WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True, slots=True)
class RetrievalSet:
    """Documents by id, queries, and the ids relevant to each query."""

    documents: dict[str, str]
    queries: list[str]
    relevant: list[frozenset[str]]


def tokens(text: str) -> list[str]:
    """Lower-case alphabetic tokens (what BM25 ranks with)."""
    return _WORD.findall(text.lower())


def _keywords(query: str, target: str) -> list[str]:
    """The query's content words the paraphrase does not use, longest first."""
    in_target = set(tokens(target))
    words = [w for w in dict.fromkeys(tokens(query)) if len(w) > 2 and w not in _STOP]
    fresh = [w for w in words if w not in in_target] or words
    return sorted(fresh, key=len, reverse=True)


def _fill(template: str, a: str, b: str) -> str:
    return template.format(a=a, b=b, A=a.capitalize(), B=b.capitalize())


def build(seed: int = 9, *, negatives: int = 8, total: int = 2200) -> RetrievalSet:
    """The retrieval set for ``seed`` (the same every time): one relevant document per query,
    ``negatives`` hard negatives per query, filler up to ``total`` documents."""
    rng = random.Random(seed)  # noqa: S311  # data, not secrets
    lines = [line.strip() for line in _INTENTS.strip().splitlines()]
    pairs = list(zip(lines[::2], lines[1::2], strict=True))
    documents: dict[str, str] = {}
    queries: list[str] = []
    relevant: list[frozenset[str]] = []
    pool: list[str] = []
    keywords = [_keywords(q, t) for q, t in pairs]
    for words in keywords:
        pool.extend(words)
    for i, ((query, target), words) in enumerate(zip(pairs, keywords, strict=True)):
        queries.append(query)
        documents[f"t{i}"] = target
        relevant.append(frozenset({f"t{i}"}))
        combos = [(a, b) for a in words for b in words if a != b] or [(words[0], words[0])]
        for j in range(negatives):
            a, b = combos[j % len(combos)]
            if j >= len(combos):  # every pair used: pair one keyword with a stranger
                b = rng.choice(pool)
            documents[f"n{i}-{j}"] = _fill(rng.choice(_CONTEXTS), a, b)
    k = 0
    while len(documents) < total:
        documents[f"f{k}"] = _fill(rng.choice(_CONTEXTS), rng.choice(pool), rng.choice(pool))
        k += 1
    order = list(documents)
    rng.shuffle(order)  # no ranker may profit from insertion order
    return RetrievalSet({d: documents[d] for d in order}, queries, relevant)


class BM25:
    """Okapi BM25 (k1 1.5, b 0.75) over ``tokens``: the keyword baseline."""

    def __init__(self, documents: dict[str, str], *, k1: float = 1.5, b: float = 0.75) -> None:
        self.ids = list(documents)
        self._docs = [Counter(tokens(documents[d])) for d in self.ids]
        self._lengths = [sum(c.values()) for c in self._docs]
        self._average = sum(self._lengths) / max(len(self._lengths), 1)
        frequency: Counter[str] = Counter()
        for counts in self._docs:
            frequency.update(counts.keys())
        n = len(self._docs)
        self._idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in frequency.items()}
        self.k1, self.b = k1, b

    def search(self, query: str, limit: int) -> list[str]:
        """The ids of the ``limit`` best-scoring documents, best first."""
        terms = [t for t in tokens(query) if t in self._idf]
        scores = []
        for index, counts in enumerate(self._docs):
            norm = self.k1 * (1 - self.b + self.b * self._lengths[index] / self._average)
            score = sum(
                self._idf[t] * counts[t] * (self.k1 + 1) / (counts[t] + norm)
                for t in terms
                if t in counts
            )
            scores.append((score, index))
        scores.sort(key=lambda pair: (-pair[0], pair[1]))
        return [self.ids[i] for _, i in scores[:limit]]


def recall_at(data: RetrievalSet, search: Callable[[str, int], Sequence[str]], k: int = 5) -> float:
    """Share of queries with a relevant document among the first ``k`` results."""
    found = sum(
        1
        for query, wanted in zip(data.queries, data.relevant, strict=True)
        if wanted & set(search(query, k))
    )
    return found / len(data.queries)
